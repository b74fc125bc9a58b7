"""What a prompt format is: questions of a task -> requests for a backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from ..lmeval_names import Naming
from ..schema import Question, ScoreRequest, TaskData
from ..tasks.base import Task


class Format:
    name: ClassVar[str] = ""
    # The backend capability it needs ("loglikelihood"); the runner refuses a backend without.
    needs: ClassVar[str] = "loglikelihood"
    # True when rendering needs the backend's chat renderer (its template): the runner then
    # builds the requests after the backend exists and passes `renderer` in. A format that
    # can be asked either way sets it per instance (its chat settings).
    needs_renderer: bool = False

    @classmethod
    def naming(cls) -> Naming:
        """lm-eval's metric, filters and task names for this format's results."""
        return Naming()

    @classmethod
    def asked(cls, prompt_format: str) -> bool:
        """Whether a run header's prompt format was made by this class."""
        return True

    def __init__(self, **settings) -> None:
        self.settings = settings

    def prompt_format(self, task: Task, renderer=None) -> str:
        """The prompt's identity for the run header: resume refuses a different one."""
        raise NotImplementedError

    def requests(self, task: Task, questions: Sequence[Question], data: TaskData,
                 num_fewshot: int, renderer=None) -> list[ScoreRequest]:
        raise NotImplementedError

    def header_chat(self, renderer=None) -> dict:
        """lm-eval's chat fields for the run header and results.json; {} when none apply."""
        return {}
