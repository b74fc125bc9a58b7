"""MMLU-Pro as lm-eval 0.4.13's `mmlu_pro` (tasks/mmlu_pro, task version 3.1, group 2.0): the
chain-of-thought recipe, run by `--task mmlu_pro --format cot` (formats/mmlu_pro_cot.py asks it).

Fourteen lm-eval tasks `mmlu_pro_<category>` under the group `mmlu_pro` (micro over questions:
weight_by_size, filter custom-extract, metric exact_match), so --limit N is the first N of
each category. Each category's description asks for "the answer is (X)"; a question reads
"Question:\\n<question as stored>\\nOptions:\\nA. <option stripped>\\n...Answer: Let's think
step by step."; the k shots are the first k validation rows of the same category, each that
text, " ", its worked answer (cot_content without its leading "A: Let's think step by step. "),
then a blank line.

Loading is `leaderboard_mmlu_pro`'s (tasks/mmlu_pro.py), but a question's index (lm-eval's
doc_id) counts within its category, not the whole split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..errors import DataError
from ..schema import LETTERS, Question, QuestionRecord, Slice, TaskData
from .base import Node, first_n
from .mmlu_pro import MMLUPro, validation

GROUP_VERSION = "2.0"  # _mmlu_pro.yaml metadata.version
TASK_VERSION = "3.1"  # _default_template_yaml metadata.version
# lm-eval's fewshot_to_target removes this (every occurrence, trailing space included): the
# shot's text already ends in "Answer: Let's think step by step.".
COT_PREFIX = "A: Let's think step by step. "


class MMLUProCoT(MMLUPro):
    title = "MMLU-Pro (chain of thought)"
    # Bump when a change alters any prompt byte: resumed runs refuse a different format.
    prompt_format = "lm-eval-0.4.13-mmlu_pro-3.1"
    limit_per_unit = True  # one lm-eval task per category

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.options = {"recipe": "cot"}  # in the run header: summaries rebuild this task

    def load(self, data_dir: str | None, units: tuple[str, ...],
             source: str | None = None) -> TaskData:
        """leaderboard_mmlu_pro's rows, each numbered within its category: lm-eval's doc_id
        here is the row's position after the category filter (process_docs)."""
        data = super().load(data_dir, units, source)
        test = {u: tuple(replace(q, index=i) for i, q in enumerate(qs))
                for u, qs in data.test.items()}
        return replace(data, test=test)

    def description(self, unit: str) -> str:
        return (f"The following are multiple choice questions (with answers) about "
                f"{unit.replace('_', ' ')}. Think step by step and then finish your answer "
                f'with "the answer is (X)" where X is the correct letter choice.\n')

    def doc_to_text(self, q: Question) -> str:
        """utils.py format_cot_example(including_answer=False): the question as stored, each
        option stripped (task version 3)."""
        options = "".join(f"{LETTERS[i]}. {opt.strip()}\n" for i, opt in enumerate(q.choices))
        return f"Question:\n{q.question}\nOptions:\n{options}Answer: Let's think step by step."

    def fewshot_target(self, q: Question) -> str:
        cot = q.meta.get("cot_content")
        if cot is None:
            raise DataError(f"MMLU-Pro validation row {q.meta.get('question_id')} has no "
                            "cot_content: chain-of-thought shots are its worked answers.")
        return cot.replace(COT_PREFIX, "")

    def shots(self, data: TaskData, q: Question, k: int) -> tuple[Question, ...]:
        """lm-eval's first_n over the validation rows of the question's category (its
        process_docs filters the few-shot split too)."""
        if not k:
            return ()
        pool = validation(data, k, "MMLU-Pro's chain-of-thought shots are the worked "
                          "answers of its validation split", " with cot_content")
        same = [s for s in pool if s.subject == q.subject]
        return first_n(same, k, f"MMLU-Pro's validation split for {q.subject}")

    def tree(self, units: Sequence[str]) -> list[Node]:
        """The group `mmlu_pro`, then each category's task (alias: the category with '_')."""
        present = tuple(sorted(set(units)))
        return [Node("mmlu_pro", "mmlu_pro", 0, present, version=GROUP_VERSION)] + \
            [Node(u, f"mmlu_pro_{u}", 1, (u,), unit=True, version=TASK_VERSION)
             for u in present]

    def slices(self, records: Sequence[QuestionRecord]) -> list[Slice]:
        return []  # the Open LLM Leaderboard's normalized score is leaderboard_mmlu_pro's
