"""The one protocol every backend implements, and the run settings backends read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..schema import ChoiceScores, ScoreRequest

if TYPE_CHECKING:
    from ..config import RunConfig


class Backend(Protocol):
    """Scores MMLU requests: log P(continuation | context) for each of the four letters.

    `score` is called once per subject with all of its requests; it yields lists of results as
    batches finish (in any order: each result carries its qid, and the runner checks that every
    request is answered exactly once). A backend may also offer `score_groups(groups)`, a
    list of (requests, skip) per subject answered in one stream, with `accepts_skip` (see
    hf.py): the runner then hands it every subject at once. Construction loads the model or
    checks the server, and raises a UserError with a clear message when it cannot give what
    scoring needs.
    """

    name: ClassVar[str]
    # True when every log-likelihood is exact; False for servers that only return top-k
    # alternatives, where a letter can be missing.
    exact: ClassVar[bool]

    def __init__(self, config: RunConfig) -> None: ...

    def info(self) -> dict:
        """Device, dtype, model identity: written into the run header."""
        ...

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[ChoiceScores]]: ...

    def close(self) -> None: ...
