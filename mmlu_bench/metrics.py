"""Pure metric functions, as lm-eval 0.4.13 computes them for MMLU.

Averages are over questions (size-weighted), never over subjects, as lm-eval's mmlu groups
(`weight_by_size: True`) report them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .dataset import CATEGORIES, CATEGORY_OF
from .schema import GroupResult, QuestionRecord


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


def subject_results(records: Iterable[QuestionRecord], num_fewshot: int) -> dict[str, GroupResult]:
    by_subject: dict[str, list[float]] = {}
    for r in records:
        by_subject.setdefault(r.subject, []).append(1.0 if r.correct else 0.0)
    return {s: GroupResult(s, 2, mean(xs), mean_stderr(xs), len(xs), num_fewshot)
            for s, xs in sorted(by_subject.items())}


def group(name: str, level: int, parts: Sequence[GroupResult],
          num_fewshot: int | None = None) -> GroupResult:
    """A size-weighted mean of subject accuracies with lm-eval's pooled stderr."""
    sizes = [p.n for p in parts]
    acc = sum(p.acc * p.n for p in parts) / sum(sizes)
    return GroupResult(name, level, acc, pooled_stderr([p.stderr for p in parts], sizes),
                       sum(sizes), num_fewshot)


def summarize(records: Sequence[QuestionRecord], num_fewshot: int) -> list[GroupResult]:
    """Rows in lm-eval's table order: mmlu, then each category (alphabetical) followed by its
    subjects (alphabetical). Groups aggregate their subjects directly, as lm-eval 0.4.13 does."""
    if not records:
        return []
    subjects = subject_results(records, num_fewshot)
    rows = [group("mmlu", 0, list(subjects.values()))]
    for category in sorted(CATEGORIES):
        parts = [subjects[s] for s in CATEGORIES[category] if s in subjects]
        if parts:
            # lm-eval prints the shots on category rows, but not on the mmlu row
            rows.append(group(category, 1, parts, num_fewshot))
            rows.extend(sorted(parts, key=lambda p: p.name))
    assert sum(r.n for r in rows if r.level == 2) == len(records), "every record in one subject"
    assert all(s in CATEGORY_OF for s in subjects), "unknown subject in records"
    return rows
