"""--sample N: a stratified random sample of test questions, and the estimate it gives.

Why not --limit: the questions in a subject's file are not in random order, so its first N
are not a random sample of the subject, yet the stderr lm-eval prints assumes they are. A
stratified sample (subjects are the strata, proportional allocation) is random within each
subject and keeps every subject's weight, so its interval means what it says.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from . import stats
from .errors import UserError
from .schema import GroupResult, Question, QuestionRecord, RunHeader, Summary


def select(test: Mapping[str, Sequence[Question]], n: int,
           seed: int) -> dict[str, tuple[Question, ...]]:
    """n questions across subjects: stats.allocate's proportional counts, then a seeded simple
    random sample within each subject, returned in file order. Deterministic: the same data,
    n and seed give the same questions on every machine (random.Random is seeded per subject
    with a string, which Python hashes the same everywhere)."""
    sizes = {s: len(qs) for s, qs in sorted(test.items())}
    if n > sum(sizes.values()):
        raise UserError(f"--sample {n}: the chosen subjects have {sum(sizes.values())} test "
                        "questions; sample fewer, or leave --sample out to score them all.")
    alloc = stats.allocate(sizes, n)
    chosen = {}
    for s, k in alloc.items():
        rng = random.Random(f"mmlu-bench-sample|{seed}|{s}")
        picked = sorted(rng.sample(range(sizes[s]), k))
        chosen[s] = tuple(test[s][i] for i in picked)
    assert sum(len(v) for v in chosen.values()) == n, "the sample has n questions"
    return chosen


def overall(header: RunHeader, records: Sequence[QuestionRecord],
            rows: Sequence[GroupResult]) -> stats.Estimate:
    """The run's MMLU accuracy and stderr, as its report should state it.

    A --sample run: the stratified estimate with the finite population correction, over the
    subject sizes recorded in the header (`population`). Any other run: the task's top row
    of `rows` (metrics.summarize: size-weighted mean, pooled stderr)."""
    population = header.population
    if header.sample and population:
        strata: dict[str, list[float]] = {s: [] for s in population}
        for r in records:
            strata[r.subject].append(1.0 if r.correct else 0.0)
        return stats.stratified_estimate(strata, population)
    if not rows:
        return stats.Estimate(float("nan"), float("nan"), 0, 0)
    return stats.Estimate(rows[0].acc, rows[0].stderr, rows[0].n, rows[0].n)


def summary_line(header: RunHeader, summary: Summary) -> str:
    """One line under the table for a --sample run; empty for any other run."""
    if not header.sample:
        return ""
    low, high = stats.normal_interval(summary.acc, summary.stderr)
    return (f"Stratified sample of {summary.n} of {summary.population} test questions (seed "
            f"{header.seed}): estimated accuracy {summary.acc:.4f} ± "
            f"{summary.stderr:.4f} (95% interval {low:.4f} to {high:.4f}; stratified stderr "
            "with finite population correction).")


def sample_json(header: RunHeader, summary: Summary) -> dict | None:
    """The estimate for results.json, or None for a run that is not a sample."""
    if not header.sample:
        return None
    low, high = stats.normal_interval(summary.acc, summary.stderr)
    return {"n": summary.n, "population": summary.population, "seed": header.seed,
            "acc": summary.acc, "acc_stderr": summary.stderr, "ci95": [low, high],
            "method": "stratified by subject, proportional allocation, finite population "
                      "correction"}
