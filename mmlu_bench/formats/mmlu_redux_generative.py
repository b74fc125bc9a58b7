"""`--task mmlu_redux --format generative`: lm-eval 0.4.13's `mmlu_redux_generative`.

The prompt is MMLU's description ("The following are multiple choice questions (with answers)
about <subject>.\\n\\n", the same in all 57 of its YAMLs) and its own doc_to_text: the stripped
question, "A. .." to "D. ..", then "Please respond with the correct letter (A, B, C or D) without
any additional comments, only the correct letter:". Greedy generate_until "</s>" (plus the
model's end-of-text), max_gen_toks lm-eval's default 256; filter `default`: the first capital
A-D anywhere in the text (regex "([ABCD])", take_first; extract.lmeval_mmlu_redux_generative),
so "Answer: C" scores as A. Metric exact_match with ignore_case and ignore_punctuation, which
changes nothing here: the filtered string is one capital A-D or "[invalid]", the target one
capital A-D. Under --apply-chat-template it is asked as the other generative recipes are
(generative.py).

0-shot only: the YAML has no fewshot_split and the data set only a test split, so lm-eval would
draw shots at random from the test rows themselves (target_delimiter ":"); no such run is
reproduced here, and --num-fewshot is refused.

Results are lm-eval's names: group mmlu_redux_generative ("mmlu_redux (generative)", version
4), its inline category groups (mmlu_redux_generative::stem ...), and the subjects'
mmlu_redux_<subject>_generative (task_alias the subject, version 4.0).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import extract, prompts
from ..lmeval_names import TaskNames
from ..prompts import Message
from ..schema import Question
from ..tasks.base import Task
from .generative import GenerativeFormat

INSTRUCTION = ("Please respond with the correct letter (A, B, C or D) without any additional "
               "comments, only the correct letter:")


class ReduxGenerative(GenerativeFormat):
    name = "generative"
    recipe = "mmlu_redux_generative"
    until = ("</s>",)
    filters = (("default", extract.lmeval_mmlu_redux_generative),)
    fixed_shots = 0
    fixed_shots_why = ("in lm-eval's mmlu_redux_generative (it has no few-shot split: its "
                       "shots would be random test rows)")
    lmeval_tasks = {"mmlu_redux": TaskNames(
        "mmlu_redux_generative", "mmlu_redux (generative)", "mmlu_redux_{unit}_generative",
        versions=("4", "N/A", "4"))}

    def turns(self, task: Task, q: Question, shots: Sequence[Question]) -> list[Message]:
        def text(q: Question) -> str:
            options = [f"{label}. {choice}"
                       for label, choice in zip(task.labels(q), q.choices, strict=True)]
            return "\n".join([q.question.strip(), *options, INSTRUCTION])

        return prompts.messages(task, q, shots, self.system_instruction, text)
