"""Pure metric functions, as lm-eval 0.4.13 computes them for multiple-choice tasks.

The table's averages are over questions (size-weighted, micro), as lm-eval's groups with
`weight_by_size: True` (every task here) report them. Beside them, `macro` is the average over
units, each subject or category weighing the same (what Meta's model cards call macro_avg):
stats.macro_average has its formula and interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from . import stats
from .schema import GroupResult, QuestionRecord, Slice
from .tasks.base import Task


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def mean_stderr(xs: Sequence[float]) -> float:
    """Standard error of the mean: sample std (n - 1) / sqrt(n). NaN for fewer than 2 values
    (lm-eval prints N/A there)."""
    n = len(xs)
    if n < 2:
        return math.nan
    mu = mean(xs)
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (n - 1)) / math.sqrt(n)


def pooled_stderr(stderrs: Sequence[float], sizes: Sequence[int]) -> float:
    """lm-eval's pooled_sample_stderr for a size-weighted group mean:

        sqrt( sum_i (n_i - 1) * n_i * se_i^2 / (N - k) / N ),  N = sum n_i, k = groups.

    NaN when any part is NaN or N <= k."""
    assert len(stderrs) == len(sizes), "one stderr per size"
    total, k = sum(sizes), len(sizes)
    if total <= k or any(math.isnan(s) for s in stderrs):
        return math.nan
    pooled_var = sum((n - 1) * se * se * n for n, se in zip(sizes, stderrs, strict=True))
    return math.sqrt(pooled_var / (total - k) / total)


def unit_scores(records: Iterable[QuestionRecord]) -> dict[str, list[float]]:
    """1.0 / 0.0 per question, by unit (the record's `subject`)."""
    by_unit: dict[str, list[float]] = {}
    for r in records:
        by_unit.setdefault(r.subject, []).append(1.0 if r.correct else 0.0)
    return by_unit


def macro(records: Sequence[QuestionRecord], noun: str = "subjects") -> tuple[Slice, dict]:
    """The macro average over the records' units (stats.macro_average): the labelled line
    under the table, with its 95% interval, and its results.json block."""
    est, low, high = stats.macro_average(unit_scores(records))
    # results.json's `unit` names the kind ("subjects", "categories") whatever the count; only
    # the line reads "over 1 subject".
    said = noun if est.population != 1 else {"categories": "category"}.get(noun, noun[:-1])
    line = Slice(f"macro average over {est.population} {said} (each weighs the same)",
                 est.acc, est.n, low, high, note="the table's rows are lm-eval's micro "
                 "averages (every question weighs the same)")
    block = {"acc": est.acc, "stderr": est.stderr, "ci95": [low, high], "units": est.population,
             "n": est.n, "unit": noun, "weighting": "each unit the same (macro_avg)"}
    return line, block


def group(name: str, level: int, parts: Sequence[GroupResult], **labels) -> GroupResult:
    """A size-weighted mean of unit accuracies with lm-eval's pooled stderr."""
    sizes = [p.n for p in parts]
    acc = sum(p.acc * p.n for p in parts) / sum(sizes)
    return GroupResult(name, level, acc, pooled_stderr([p.stderr for p in parts], sizes),
                       sum(sizes), **labels)


def summarize(records: Sequence[QuestionRecord], task: Task,
              num_fewshot: int) -> list[GroupResult]:
    """The task's rows in table order (task.tree). A unit row is its questions' mean with the
    sample stderr; a group row aggregates its units directly (micro, pooled stderr), however
    deeply it nests, as lm-eval 0.4.13 does."""
    if not records:
        return []
    scores = unit_scores(records)
    units = {u: GroupResult(u, 0, mean(xs), mean_stderr(xs), len(xs))
             for u, xs in scores.items()}
    rows = []
    for node in task.tree(sorted(units)):
        labels = {"num_fewshot": num_fewshot if node.nshot else None, "key": node.key,
                  "version": node.version, "version_text": node.version_text,
                  "unit": node.unit,
                  "group": not (node.unit or node.flat)}
        if node.flat or node.unit:
            xs = [x for u in node.units for x in scores[u]]
            rows.append(GroupResult(node.name, node.level, mean(xs), mean_stderr(xs), len(xs),
                                    **labels))
        else:
            rows.append(group(node.name, node.level, [units[u] for u in node.units], **labels))
    covered = sum(r.n for r in rows if r.unit)
    assert covered == len(records), f"{len(records) - covered} records in no unit of the task"
    return rows
