"""Every type that crosses a stage boundary. Read this first.

    dataset -> Question -> prompts -> ScoreRequest -> backends/* -> ChoiceScores
            -> scoring -> QuestionRecord -> records (JSONL) -> metrics -> GroupResult -> report

All are frozen: no stage changes what an earlier one produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True, slots=True)
class Question:
    """One MMLU test (or dev) row."""

    subject: str
    index: int  # row position in the subject's split file: lm-eval's doc_id
    question: str
    choices: tuple[str, str, str, str]
    gold: int  # 0..3

    @property
    def qid(self) -> str:
        return f"{self.subject}/{self.index}"


@dataclass(frozen=True, slots=True)
class MMLUData:
    """The questions of one run: test questions to score, dev questions for few-shot."""

    test: dict[str, tuple[Question, ...]]  # subject -> questions, in file order
    dev: dict[str, tuple[Question, ...]]
    source: str  # where they came from, for the run header


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """What a backend scores: log P(continuation | context) for each continuation."""

    qid: str
    context: str
    continuations: tuple[str, ...]  # " A" .. " D": the word-boundary space belongs here


@dataclass(frozen=True, slots=True)
class ChoiceScores:
    """A backend's answer to one ScoreRequest.

    A log-likelihood is None when the backend could not see it (a server's top-k
    alternatives without that letter); it is recorded as missing, never dropped.
    """

    qid: str
    loglikelihoods: tuple[float | None, ...]
    n_tokens: int  # prompt tokens the model reads for it (lm-eval's input rows)


@dataclass(frozen=True, slots=True)
class QuestionRecord:
    """One line of records.jsonl: the source of truth for every summary."""

    qid: str
    subject: str
    index: int
    gold: int
    loglikelihoods: tuple[float | None, ...]
    pred: int
    correct: bool
    prompt_sha256: str
    n_tokens: int


@dataclass(frozen=True, slots=True)
class RunHeader:
    """First line of records.jsonl: what was run, so a run can be resumed or compared."""

    model: str
    backend: str
    num_fewshot: int
    limit: int | None
    subjects: tuple[str, ...]
    data_fingerprint: str
    prompt_format: str
    tool_version: str
    backend_info: dict = field(default_factory=dict)  # device, dtype, model identity
    started: str = ""
    sample: int | None = None  # --sample N: a stratified random sample (sampling.py)
    seed: int | None = None  # the sample's seed; None when not a sample
    population: dict = field(default_factory=dict)  # sample runs: subject -> test size


@dataclass(frozen=True, slots=True)
class GroupResult:
    """One row of the results table: a subject, a category or the whole of mmlu."""

    name: str
    level: int  # 0 = mmlu, 1 = category, 2 = subject
    acc: float
    stderr: float
    n: int
    num_fewshot: int | None = None  # per-subject rows only, as lm-eval prints it
