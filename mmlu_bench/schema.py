"""Every type that crosses a stage boundary. Read this first.

    tasks/* -> TaskData(Question) -> formats/* -> ScoreRequest -> backends/* -> ChoiceScores
            -> scoring -> QuestionRecord -> records (JSONL) -> metrics -> Summary -> reports

A task says what is asked (data, few-shot source, prompt recipe, groups), a format how it is
asked (lm-eval's plain prompt, a chat template), a backend who answers. All types are frozen: no
stage changes what an earlier one produced.

The three types a run folder holds (RunHeader, QuestionRecord, RunFooter) are converted to and
from their JSON lines here and nowhere else (`to_json`, `header_from_json`, `record_from_json`,
`footer_from_json`); records.py only reads and writes the lines.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

# Answer labels: a question with n options uses the first n (MMLU 4, MMLU-Pro up to 10).
LETTERS = tuple("ABCDEFGHIJ")


@dataclass(frozen=True, slots=True)
class Question:
    """One test (or few-shot) row of a task."""

    subject: str  # the task's unit (an lm-eval subtask): an MMLU subject, an MMLU-Pro category
    index: int  # row position in the unit's split (MMLU) or the whole split: lm-eval's doc_id
    question: str
    choices: tuple[str, ...]  # 3..10 options
    gold: int  # 0..len(choices)-1
    meta: dict = field(default_factory=dict, compare=False)  # e.g. a Redux or CS/CA label

    @property
    def qid(self) -> str:
        return f"{self.subject}/{self.index}"


@dataclass(frozen=True, slots=True)
class TaskData:
    """The questions of one run: test questions to score and the few-shot pool, by unit."""

    test: dict[str, tuple[Question, ...]]  # unit -> questions, in file order
    dev: dict[str, tuple[Question, ...]]  # unit -> few-shot pool (dev or validation split)
    source: str  # where they came from, for the run header (kind:where[@revision])


MMLUData = TaskData  # the name before tasks existed


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """What a backend scores: log P(continuation | context) for each continuation."""

    qid: str
    context: str
    continuations: tuple[str, ...]  # " A" .. " D": the word-boundary space belongs here
    # A server that applies its own chat template gets these ({role, content} dicts); the
    # context is then their JSON (lm-eval's JsonChatStr), for hashing and records only.
    messages: tuple | None = None


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
class GenerateRequest:
    """What a backend generates for: greedy text after `context` until a stop string.

    `until` is the format's stop strings; the backend adds its model's end-of-text, as lm-eval
    does. A chat format also gives `messages` (the turns; `context` is then their text, for the
    prompt hash and for backends that only take text)."""

    qid: str
    context: str
    until: tuple[str, ...]
    max_tokens: int
    messages: tuple[dict, ...] | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    """A backend's answer to one GenerateRequest: the text cut at the first stop string."""

    qid: str
    text: str
    n_tokens: int  # prompt tokens read plus tokens generated
    finish: str  # "stop" (a stop string or end-of-text), "length" (max_tokens), "error"


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
    meta: dict = field(default_factory=dict)  # the question's labels; not written when empty
    # Generative formats only (not written when None/empty, so log-likelihood records read
    # as they always did): the generated text, the letter extracted from it (None when
    # extraction failed, and then why), how generation ended, the other filters' letters
    # (lm-eval's second filter of a task), the number of options.
    response: str | None = None
    answer: str | None = None
    failure: str | None = None
    finish: str | None = None
    filters: dict = field(default_factory=dict)
    n_options: int | None = None


@dataclass(frozen=True, slots=True)
class RunHeader:
    """First line of records.jsonl: what was run, so a run can be resumed or compared."""

    model: str
    backend: str
    num_fewshot: int
    limit: int | None
    subjects: tuple[str, ...]  # the task's units
    data_fingerprint: str
    prompt_format: str
    tool_version: str
    backend_info: dict = field(default_factory=dict)  # device, dtype, model identity
    started: str = ""
    sample: int | None = None  # --sample N: a stratified random sample (sampling.py)
    seed: int | None = None  # the sample's seed; None when not a sample
    population: dict = field(default_factory=dict)  # sample runs: subject -> test size
    task: str = "mmlu"  # tasks.TASKS key
    task_options: dict = field(default_factory=dict)  # e.g. languages, a Redux subset
    # --apply-chat-template / --system-instruction runs: lm-eval's chat_template,
    # chat_template_sha, system_instruction, system_instruction_sha, fewshot_as_multiturn
    chat: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunFooter:
    """Last line of a finished records.jsonl: totals and this invocation's timing."""

    questions: int
    tokens: int
    wall_seconds: float
    tokens_per_second: float | None = None


@dataclass(frozen=True, slots=True)
class GroupResult:
    """One row of the results table: a unit, a group of units or the whole task."""

    name: str
    level: int  # 0 = the task, 1.. = groups, the deepest = units
    acc: float
    stderr: float
    n: int
    num_fewshot: int | None = None  # printed on the rows lm-eval prints it on
    key: str = ""  # lm-eval's task or group name (results.json key)
    version: str = ""  # lm-eval's version of that task or group
    unit: bool = False  # a leaf: one of the task's units
    group: bool = False  # an lm-eval group of tasks (its Groups table, group_subtasks)
    alias: str = ""  # what lm-eval prints for the row where that is not `name`
    # lm-eval holds this version as text (a group's metadata.version, e.g. "2"), not a number:
    # results.json writes it as a string, and a table column with text left-aligns it
    version_text: bool = False


@dataclass(frozen=True, slots=True)
class Slice:
    """A labelled subset's accuracy beside the table (Redux-ok questions, culturally sensitive
    ones, a normalized score), with a 95% Wilson interval."""

    name: str
    acc: float
    n: int
    low: float
    high: float
    note: str = ""
    proportion: bool = True  # False: a rescaled score (e.g. normalized), may leave [0, 1]


@dataclass(frozen=True, slots=True)
class Flag:
    """A scored question a label set calls out (Redux: MMLU's answer is wrong), listed in the
    reports beside the numbers, never removed from them."""

    qid: str
    label: str  # e.g. "wrong_groundtruth"
    note: str = ""  # e.g. which answer the model picked


@dataclass(frozen=True, slots=True)
class Summary:
    """Everything a report shows, computed once from a run's header and records."""

    task: str
    title: str  # e.g. "MMLU", "MMLU-Pro"
    rows: tuple[GroupResult, ...]  # table order
    acc: float  # the headline estimate (stratified for --sample runs)
    stderr: float
    n: int
    population: int  # questions the estimate stands for
    chance: float  # mean over questions of 1 / options
    labels: tuple[str, ...]  # letters used by the run's questions
    missing: int  # questions with a letter missing from a server's top log-probabilities
    slices: tuple[Slice, ...] = ()
    finished: bool = True
    flags: tuple[Flag, ...] = ()
    blocks: dict = field(default_factory=dict)  # extra results.json blocks by key ("redux")
    # Generative formats: (unit, questions without an extracted letter, questions), by unit.
    failures: tuple[tuple[str, int, int], ...] = ()
    # lm-eval's metric and filters for the rows (lmeval_names.Naming): `rows` are the first
    # filter's; `filter_rows` the others' (filter -> rows, in the same order as `rows`).
    metric: str = "acc"
    filters: tuple[str, ...] = ("none",)
    filter_rows: dict = field(default_factory=dict)
    note: str = ""  # the format's word on its rows, printed under the table


# records.jsonl's format, written in every header as `records_version`. A header without one is
# version 1 (folders written before 2026-12-05); it reads as version 2 with the same fields.
RECORDS_VERSION = 2
# Record fields written only when set, so a log-likelihood record reads as it always did.
_OPTIONAL = ("meta", "filters", "response", "answer", "failure", "finish", "n_options")


class FormatError(ValueError):
    """A line that is not what its place in records.jsonl says (records.py names the line)."""


def to_json(value: RunHeader | QuestionRecord | RunFooter) -> dict:
    """A header, record or footer as the JSON object its records.jsonl line holds."""
    d = json.loads(json.dumps(asdict(value)))  # tuples become lists, as json.loads gives back
    if isinstance(value, RunHeader):
        d["records_version"] = RECORDS_VERSION
    elif isinstance(value, QuestionRecord):
        d = {k: v for k, v in d.items() if k not in _OPTIONAL or v not in (None, {})}
    return d


def header_from_json(d: dict) -> RunHeader:
    d = dict(d)
    version = d.pop("records_version", 1)
    if not isinstance(version, int) or version > RECORDS_VERSION:
        raise FormatError(f"records version {version!r} is newer than this mmlu-bench reads "
                          f"({RECORDS_VERSION}): upgrade mmlu-bench")
    d["subjects"] = tuple(_get(d, "subjects"))
    return _build(RunHeader, d)


def record_from_json(d: dict) -> QuestionRecord:
    d = dict(d)
    d["loglikelihoods"] = tuple(_get(d, "loglikelihoods"))
    return _build(QuestionRecord, d)


def footer_from_json(d: dict) -> RunFooter:
    return _build(RunFooter, dict(d))


def _get(d: dict, key: str):
    if key not in d:
        raise FormatError(f"no {key!r}")
    return d[key]


def _build(cls, d: dict):
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise FormatError(f"unknown {cls.__name__} field(s) {', '.join(sorted(unknown))}: "
                          "written by a newer mmlu-bench?")
    try:
        return cls(**d)
    except TypeError as e:  # a required field missing
        raise FormatError(f"not a {cls.__name__} ({e})") from None
