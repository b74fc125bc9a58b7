"""Meta's evaluation recipes for Llama 3.1 Instruct, as lm-eval 0.4.13 ships them
(tasks/llama3/instruct, meant to run with --apply_chat_template --fewshot_as_multiturn).

llama on mmlu    `mmlu_llama`: no description; each question "Given the following question and
                 four candidate answers (A, B, C and D), choose the best answer.\\nQuestion:
                 <question stripped>\\nA. ..\\nD. ..\\nYour response should end with "The best
                 answer is [the_answer_letter]" ..."; the first k dev rows as shots (Meta's
                 5), each answered "The best answer is B."; the question's answer turn
                 pre-filled with the gen_prefix "The best answer is" (chat_spec: the template
                 continues it, no generation prompt). Greedy until "." for at most 10 tokens;
                 filter strict_match (the stripped text), exact_match against "B." with
                 ignore_case, ignore_punctuation and regexes_to_ignore "\\$" and "\\.$".
llama on the     the same recipe over Meta's translated questions (tasks/mmlu_llama_multilingual.py,
multilingual     lm-eval's mmlu_<lang>_llama).
task
llama on         `mmlu_pro_llama`: the task's prompt and shots (tasks/mmlu_pro_llama.py); greedy
mmlu_pro         with no stop string but end-of-text, 1,024 tokens; filter strict_match: the LAST
                 "[tT]he best answer is X"; exact_match with Meta's regexes_to_ignore.
llama-cot        `mmlu_cot_llama`: 0-shot, Meta's step-by-step instruction, no stop string but
on mmlu          end-of-text, 1,024 tokens; filter strict_match: the LAST "best answer is X".

Without --apply-chat-template a gen_prefix is written after the question as lm-eval writes it
in plain text ("... or D. The best answer is"), the model continuing from there.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import extract, prompts
from ..lmeval_names import TaskNames
from ..prompts import Message
from ..schema import Question
from ..tasks.base import Task
from .generative import GenerativeFormat

GEN_PREFIX = "The best answer is"
# mmlu_llama's doc_to_text (and the multilingual tasks', over Meta's columns).
PROMPT = ("Given the following question and four candidate answers (A, B, C and D), choose the "
          "best answer.\nQuestion: {question}\n{options}\nYour response should end with \"The "
          "best answer is [the_answer_letter]\" where the [the_answer_letter] is one of A, B, "
          "C or D.")
# mmlu_cot_llama's doc_to_text.
COT_PROMPT = ("Given the following question and four candidate answers (A, B, C and D), choose "
              "the best answer.\n\nQuestion: {question}\n{options}\n\n- For simple problems:\n"
              "Directly provide the answer with minimal explanation.\n\n- For complex problems:\n"
              "Use this step-by-step format:\n## Step 1: [Concise description]\n"
              "[Brief explanation]\n## Step 2: [Concise description]\n[Brief explanation]\n\n"
              "Regardless of the approach, always conclude with:\nThe best answer is "
              "[the_answer_letter].\nwhere the [the_answer_letter] is one of A, B, C or D.\n\n"
              "Let's think step by step.")
MAX_TOKENS = 1024  # the chain-of-thought recipes' max_gen_toks


def options(q: Question) -> str:
    """'A. <choice>' lines, the choices as stored (the templates strip only the question)."""
    return "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", q.choices,
                                                                     strict=True))


def meta_turns(fmt: GenerativeFormat, template: str, task: Task, q: Question,
               shots: Sequence[Question]) -> list[Message]:
    """lm-eval's messages for Meta's MMLU prompt `template`: no description, each shot
    answered "B." (doc_to_target "{{['A.','B.','C.','D.'][answer]}}"), the format's prefill."""
    def text(q: Question) -> str:
        return template.format(question=q.question.strip(), options=options(q))

    return prompts.messages(task, q, shots, fmt.system_instruction, text,
                            gen_prefix=fmt.gen_prefix, target=lambda s: f"{'ABCD'[s.gold]}.",
                            description="")


def llama_names(top: str, unit_alias: str = "{words}", stem_version: str = "1",
                top_version: str = "1") -> TaskNames:
    """The names of a three-level Meta recipe: the group, its category groups (named groups
    with an alias each), the subjects' tasks (version 1.0)."""
    return TaskNames(top, top, f"{top}_{{unit}}", unit_alias=unit_alias,
                     group=f"{top}_{{slug}}", group_alias="{group}",
                     versions=(top_version, "1", "1.0"), group_versions={"stem": stem_version},
                     group_version_text=True)


class MMLULlama(GenerativeFormat):
    name = "llama"
    recipe = "mmlu_llama"
    until = (".",)
    max_tokens = 10
    gen_prefix = GEN_PREFIX
    filters = (("strict_match", extract.lmeval_mmlu_llama),)
    lmeval_tasks = {"mmlu": llama_names("mmlu_llama", stem_version="0")}

    def turns(self, task: Task, q: Question, shots: Sequence[Question]) -> list[Message]:
        return meta_turns(self, PROMPT, task, q, shots)


class MMLUCoTLlama(GenerativeFormat):
    name = "llama-cot"
    recipe = "mmlu_cot_llama"
    until = ()
    max_tokens = MAX_TOKENS
    filters = (("strict_match", extract.lmeval_mmlu_cot_llama),)
    fixed_shots = 0
    fixed_shots_why = "in lm-eval's mmlu_cot_llama (Meta's 0-shot chain of thought)"
    lmeval_tasks = {"mmlu": llama_names("mmlu_cot_llama", top_version="N/A")}

    def turns(self, task: Task, q: Question, shots: Sequence[Question]) -> list[Message]:
        return meta_turns(self, COT_PROMPT, task, q, shots)


class ProLlama(GenerativeFormat):
    name = "llama"
    recipe = "mmlu_pro_llama"
    until = ()
    max_tokens = MAX_TOKENS
    filters = (("strict_match", extract.lmeval_mmlu_pro_llama),)
