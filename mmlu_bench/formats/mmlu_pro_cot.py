"""`--task mmlu_pro --format cot`: lm-eval 0.4.13's `mmlu_pro`, generated chain of thought.

The prompt is the task's (tasks/mmlu_pro_cot.py: description, k worked shots of the category,
the question ending "Answer: Let's think step by step."), rendered as lm-eval's plain
multiple-choice context (prompts.py), or under --apply-chat-template as lm-eval's chat: the
description the system message, each shot a user turn and an assistant turn holding its worked
answer (generative.py). Greedy generate_until "Question:" (plus the model's end-of-text),
max_gen_toks 2048; filter `custom-extract`: the FIRST "answer is (X)" or "answer is X", X in
A-J, case-sensitive (extract.lmeval_mmlu_pro); metric exact_match on the letter.
"""

from __future__ import annotations

from .. import extract
from .generative import GenerativeFormat


class ProCoT(GenerativeFormat):
    name = "cot"
    until = ("Question:",)
    max_tokens = 2048  # the task's max_gen_toks (since task version 2.1)
    filters = (("custom-extract", extract.lmeval_mmlu_pro),)
