"""What every task shares: lm-eval's multiple-choice recipe, few-shot samplers, group trees.

A task (tasks/<name>.py) says what is asked: where its questions come from, which units (lm-eval
subtasks) it has, where few-shot examples come from, the prompt recipe and how units group and
aggregate. The defaults here are lm-eval's `mmlu` task's; a task overrides what differs.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import stats
from ..errors import UserError
from ..schema import LETTERS, Flag, Question, QuestionRecord, Slice, TaskData


@dataclass(frozen=True, slots=True)
class Node:
    """A row of the results tree: the units it aggregates (micro: every question weighs the
    same, as lm-eval's `weight_by_size: true` groups) or, for a unit, the unit itself."""

    name: str  # as printed
    key: str  # lm-eval's task or group name
    level: int
    units: tuple[str, ...]
    unit: bool = False
    nshot: bool = True  # lm-eval prints the shots on this row
    version: str = ""
    # An lm-eval task over all the questions of its units (not a group of tasks): plain mean
    # and sample stderr over its questions, not the pooled stderr of a group.
    flat: bool = False
    version_text: bool = False  # lm-eval's results hold the version as text (GroupResult)


class Task:
    """The lm-eval `mmlu` recipe and first-n few-shot from a dev split; override what differs."""

    name = ""  # the --task name
    title = ""  # for reports
    prompt_format = ""  # changes whenever a prompt byte would change: resume refuses others
    # lm-eval's multiple_choice recipe: context = description + shots + doc_to_text(question);
    # continuations = target_delimiter + label. The space belongs to the continuation.
    target_delimiter = " "
    fewshot_delimiter = "\n\n"
    limit_per_unit = True  # --limit N: the first N of each unit (one lm-eval task each)
    # Where the questions come from without --data-dir (--data-source), the default first:
    # "bundled" ships inside mmlu-bench (runs offline), "hub" is downloaded once, then cached.
    sources: tuple[str, ...] = ("hub",)
    formats: tuple[str, ...] = ()  # the only --format values it takes, where it is one recipe
    unit_noun = "subjects"  # what its units are, for the macro average's line

    def __init__(self, **options) -> None:
        if options:
            flags = ", ".join("--" + o.replace("_", "-") for o in sorted(options))
            raise UserError(f"--task {self.name} takes no option {flags}.")
        self.options: dict = {}

    # ---- what is asked
    def units(self) -> tuple[str, ...]:
        raise NotImplementedError

    def groups(self) -> Mapping[str, Sequence[str]]:
        """Names accepted by --subjects besides units: group -> its units."""
        return {}

    def resolve(self, spec: str | None) -> tuple[str, ...]:
        """'a,b' (units or group names) -> sorted units; None -> every unit."""
        if not spec:
            return self.units()
        known, groups = set(self.units()), self.groups()
        chosen: set[str] = set()
        for name in (part.strip() for part in spec.split(",") if part.strip()):
            if name in groups:
                chosen.update(groups[name])
            elif name in known:
                chosen.add(name)
            else:
                close = difflib.get_close_matches(name, sorted(known | set(groups)), n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                listing = "" if self.name == "mmlu" else f" --task {self.name}"
                raise UserError(f"unknown subject {name!r}.{hint} `mmlu-bench subjects"
                                f"{listing}` lists them.")
        if not chosen:
            raise UserError("--subjects is empty: give subject or category names, comma-separated.")
        return tuple(sorted(chosen))

    def load(self, data_dir: str | None, units: tuple[str, ...],
             source: str | None = None) -> TaskData:
        """The questions of `units`: from `data_dir` (a local copy) when given, else from
        `source`, one of `sources` (None: the first). A task with one source ignores it."""
        raise NotImplementedError

    def shots(self, data: TaskData, q: Question, k: int) -> tuple[Question, ...]:
        """lm-eval's first_n sampler over the unit's few-shot pool."""
        return first_n(data.dev.get(q.subject, ()), k, q.subject)

    # ---- the recipe
    def description(self, unit: str) -> str:
        return ""

    def doc_to_text(self, q: Question) -> str:
        """lm-eval's `mmlu` doc_to_text: the stripped question, lettered options, 'Answer:'."""
        lines = [q.question.strip()]
        lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(q.choices)]
        return "\n".join(lines) + "\nAnswer:"

    def labels(self, q: Question) -> tuple[str, ...]:
        return LETTERS[:len(q.choices)]

    def fewshot_target(self, q: Question) -> str:
        """A shot's answer (lm-eval's fewshot doc_to_target): its letter, by default."""
        return self.labels(q)[q.gold]

    # ---- groups and extras
    def tree(self, units: Sequence[str]) -> list[Node]:
        """The results rows for the units a run covered, in table order."""
        raise NotImplementedError

    def slices(self, records: Sequence[QuestionRecord]) -> list[Slice]:
        """Labelled subsets shown beside the table; none by default."""
        return []

    def flags(self, records: Sequence[QuestionRecord]) -> list[Flag]:
        """Scored questions to list in the reports (e.g. a known wrong answer key); none."""
        return []

    def blocks(self, records: Sequence[QuestionRecord]) -> dict:
        """Extra results.json blocks by key; none by default."""
        return {}


def first_n(pool: Sequence[Question], k: int, unit: str) -> tuple[Question, ...]:
    """lm-eval's first_n sampler: the first k rows of the pool, in stored order."""
    if k > len(pool):
        raise UserError(f"--num-fewshot {k} is more than the {len(pool)} few-shot examples of "
                        f"{unit}; use at most {len(pool)}.")
    return tuple(pool[:k])


def first_n_without(pool: Sequence[Question], k: int, q: Question) -> tuple[Question, ...]:
    """first_n when the few-shot split is the test split: the question itself is left out."""
    return first_n([p for p in pool if p.index != q.index], k, q.subject)


class SeededSampler:
    """lm-eval's default sampler: one random.Random(seed) per task, consumed question after
    question in document order, so a question's shots depend on the questions before it."""

    def __init__(self, seed: int = 1234) -> None:
        self.seed = seed
        self._rngs: dict[str, random.Random] = {}

    def sample(self, unit: str, pool: Sequence[Question], k: int) -> tuple[Question, ...]:
        if k > len(pool):
            raise UserError(f"--num-fewshot {k} is more than the {len(pool)} few-shot examples "
                            f"of {unit}; use at most {len(pool)}.")
        rng = self._rngs.setdefault(unit, random.Random(self.seed))
        return tuple(rng.sample(list(pool), k))


def slice_of(name: str, records: Sequence[QuestionRecord], note: str = "") -> Slice:
    right = sum(r.correct for r in records)
    n = len(records)
    low, high = stats.wilson(right, n)
    return Slice(name, right / n if n else float("nan"), n, low, high, note)
