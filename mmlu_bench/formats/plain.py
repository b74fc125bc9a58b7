"""lm-eval's plain multiple-choice prompt (no chat template), letters scored by
log-likelihood: the task's description, k answered examples, the question; continuations
" A" .. " J" (prompts.py has the rendering). A --system-instruction is prepended, as lm-eval
prepends it without a template."""

from __future__ import annotations

from collections.abc import Sequence

from .. import prompts
from ..schema import Question, ScoreRequest, TaskData
from ..tasks.base import Task
from .base import Format
from .chat_spec import plain_header, plain_identity


class Plain(Format):
    name = "plain"
    needs = "loglikelihood"

    def __init__(self, system_instruction: str | None = None, **settings) -> None:
        super().__init__(**settings)
        self.system_instruction = system_instruction or None

    def prompt_format(self, task: Task, renderer=None) -> str:
        return task.prompt_format + plain_identity(self.system_instruction)

    def requests(self, task: Task, questions: Sequence[Question], data: TaskData,
                 num_fewshot: int, renderer=None) -> list[ScoreRequest]:
        return prompts.build_requests(task, questions, data, num_fewshot,
                                      self.system_instruction)

    def header_chat(self, renderer=None) -> dict:
        return plain_header(self.system_instruction)
