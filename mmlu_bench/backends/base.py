"""How a backend declares itself (BackendSpec, one row of backends/__init__.py's table), the
one protocol every backend implements, and what most backends share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..schema import ChoiceScores, GenerateRequest, Generation, ScoreRequest

if TYPE_CHECKING:
    from ..config import RunConfig

# A unit's requests and the qids among them already recorded (resume).
Group = tuple[Sequence[ScoreRequest], frozenset[str]]
# The same for generative formats: a unit's GenerateRequests and the qids already recorded.
GenGroup = tuple[Sequence[GenerateRequest], frozenset[str]]

# info() keys that identify the model: a resume refuses a run recorded with other values.
RESUME_KEYS = ("device", "dtype", "model_sha256", "model_size", "hub_id", "revision",
               "model_path", "quantize", "server_model")
# What a backend can do: "loglikelihood" (score continuations: score_groups); "chat"
# (chat_renderer(): lm-eval's chat messages rendered with the model's template, or sent to a
# server's chat endpoint); "generate" (greedy text until a stop string: generate_groups).
CAPABILITIES = ("loglikelihood", "chat", "generate")


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Everything known about a backend before its module is imported (which may import torch):
    the CLI, the runner's checks and `mmlu-bench backends` read only this."""

    name: str  # the --model prefix
    factory: str  # "module:callable" that builds it from a RunConfig
    needs: str  # what it needs, in words
    install: str  # how to get that
    requires: tuple[str, ...] = ()  # importable modules that must be present
    capabilities: frozenset[str] = frozenset({"loglikelihood"})
    # info() keys that identify the model: a resume refuses a run recorded with other values.
    resume_keys: tuple[str, ...] = RESUME_KEYS
    demo: bool = False  # can run the demo model's GGUF (--model demo)
    # Runs the model in this process, so --data-parallel can run copies of it as Ray actors
    # (ray_pool.py); False for a client of a server (which has its own --concurrency).
    in_process: bool = True

    def __post_init__(self) -> None:
        assert self.capabilities <= set(CAPABILITIES), self.capabilities


class Backend(Protocol):
    """Scores requests: log P(continuation | context) for each continuation.

    `score_groups` gets every unit's requests, each with the qids already recorded, and yields
    lists of results as batches finish (in any order: each result carries its qid, and the
    runner checks that every unrecorded request is answered exactly once and no recorded one
    is). Construction loads the model or checks the server, and raises a UserError with a
    clear message when it cannot give what scoring needs.
    """

    # True when every log-likelihood is exact; False for servers that only return top-k
    # alternatives, where a letter can be missing. (An instance's: ollama: is exact when it
    # scores the pulled file, not through the server.) Its name and capabilities are its
    # BackendSpec's.
    exact: bool

    def __init__(self, config: RunConfig) -> None: ...

    def info(self) -> dict:
        """Device, dtype, model identity: written into the run header."""
        ...

    def score_groups(self, groups: Iterable[Group]) -> Iterator[list[ChoiceScores]]: ...

    # Only with the "generate" capability (the same shape as score_groups):
    # def generate_groups(self, groups: Iterable[GenGroup]) -> Iterator[list[Generation]]: ...
    # Only with the "chat" capability:
    # def chat_renderer(self) -> chat_template.ChatRenderer: ...

    def close(self) -> None: ...


class UnitScorer:
    """For backends that score one unit's unrecorded requests at a time (`score`), where
    batching does not depend on what else was in the unit."""

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[ChoiceScores]]:
        raise NotImplementedError

    def score_groups(self, groups: Iterable[Group]) -> Iterator[list[ChoiceScores]]:
        return _per_unit(groups, self.score)

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[list[Generation]]:
        raise NotImplementedError

    def generate_groups(self, groups: Iterable[GenGroup]) -> Iterator[list[Generation]]:
        return _per_unit(groups, self.generate)


def _per_unit(groups, answer):
    """`answer` (score or generate) over each unit's unrecorded requests, unit after unit."""
    for todo in unrecorded(groups):
        yield from answer(todo)


def unrecorded(groups: Iterable[Group] | Iterable[GenGroup]) -> Iterator[list]:
    """Each unit's requests not yet recorded (units with none left are passed over)."""
    for requests, skip in groups:
        todo = [r for r in requests if r.qid not in skip]
        if todo:
            yield todo
