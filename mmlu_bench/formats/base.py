"""What a prompt format is: questions of a task -> requests for a backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..schema import Question, ScoreRequest, TaskData
from ..tasks.base import Task


class Format:
    name: ClassVar[str] = ""
    # The backend capability it needs ("loglikelihood"); the runner refuses a backend without.
    needs: ClassVar[str] = "loglikelihood"

    def __init__(self, **settings) -> None:
        self.settings = settings

    def prompt_format(self, task: Task) -> str:
        """The prompt's identity for the run header: resume refuses a different one."""
        raise NotImplementedError

    def requests(self, task: Task, questions: Sequence[Question], data: TaskData,
                 num_fewshot: int) -> list[ScoreRequest]:
        raise NotImplementedError
