"""lm-eval's plain multiple-choice prompt (no chat template), letters scored by
log-likelihood: the task's description, k answered examples, the question; continuations
" A" .. " J" (prompts.py has the rendering)."""

from __future__ import annotations

from collections.abc import Sequence

from .. import prompts
from ..schema import Question, ScoreRequest, TaskData
from ..tasks.base import Task
from .base import Format


class Plain(Format):
    name = "plain"
    needs = "loglikelihood"

    def prompt_format(self, task: Task) -> str:
        return task.prompt_format

    def requests(self, task: Task, questions: Sequence[Question], data: TaskData,
                 num_fewshot: int) -> list[ScoreRequest]:
        return prompts.build_requests(task, questions, data, num_fewshot)
