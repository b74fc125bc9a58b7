"""MMLU-Pro as Meta's recipe, lm-eval 0.4.13's `mmlu_pro_llama` (tasks/llama3/instruct/mmlu_pro):
run by `--task mmlu_pro --format llama` (formats/llama.py asks it).

Fourteen tasks `mmlu_pro_llama_<category>` (task_alias the category with "_", version 1.0)
under the group `mmlu_pro_llama` (version 1.0, micro over questions: weight_by_size), so --limit
N is the first N of each category, numbered within it. No description; a question reads "Given
the following question and candidate answers, choose the best answer.\\nQuestion: <question
stripped>\\n" then "A. <option as stored>\\n" for each option, then "\\nYour response should end
with \\"The best answer is [the_answer_letter].\\" where the [the_answer_letter] is a letter from
the provided choices.\\n\\nLet's think step by step."; the k shots are the first k validation rows
of the category, each answered by its worked answer (cot_content without its opening "A: Let's
think step by step.", stripped, each "The answer is (X)." as "The best answer is X.").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..schema import LETTERS, Question
from .base import Node
from .mmlu_pro_cot import MMLUProCoT

VERSION = "1.0"  # the group's and every category task's metadata.version
PROMPT = ("Given the following question and candidate answers, choose the best answer.\n"
          "Question: {question}\n{options}\nYour response should end with \"The best answer is "
          "[the_answer_letter].\" where the [the_answer_letter] is a letter from the provided "
          "choices.\n\nLet's think step by step.")
_ANSWER = re.compile(r"The answer is \(([A-Z])\)\.")


class MMLUProLlama(MMLUProCoT):
    title = "MMLU-Pro (Meta's chain of thought)"
    # Bump when a change alters any prompt byte: resumed runs refuse a different format.
    prompt_format = "lm-eval-0.4.13-mmlu_pro_llama-1.0"

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.options = {"recipe": "llama"}  # in the run header: summaries rebuild this task

    def description(self, unit: str) -> str:
        return ""

    def doc_to_text(self, q: Question) -> str:
        options = "".join(f"{LETTERS[i]}. {opt}\n" for i, opt in enumerate(q.choices))
        return PROMPT.format(question=q.question.strip(), options=options)

    def fewshot_target(self, q: Question) -> str:
        """utils.py fewshot_to_text: the worked answer, Meta's closing line."""
        super().fewshot_target(q)  # a DataError where the row has no worked answer
        text = q.meta["cot_content"].removeprefix("A: Let's think step by step.").strip()
        return _ANSWER.sub(r"The best answer is \1.", text)

    def tree(self, units: Sequence[str]) -> list[Node]:
        present = tuple(sorted(set(units)))
        return [Node("mmlu_pro_llama", "mmlu_pro_llama", 0, present, version=VERSION,
                     version_text=True)] + \
            [Node(u, f"mmlu_pro_llama_{u}", 1, (u,), unit=True, version=VERSION)
             for u in present]
