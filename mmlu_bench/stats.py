"""Pure statistics for reports and comparisons: intervals, paired tests, stratified samples,
calibration. No I/O, no printing; every formula is in the docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def normal_interval(estimate: float, stderr: float, z: float = Z95) -> tuple[float, float]:
    """estimate +- z * stderr (a 95% interval by default). NaN stays NaN (fewer than 2 values)."""
    return estimate - z * stderr, estimate + z * stderr


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion p = correct / n:

        (p + z^2/2n -+ z * sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)

    Unlike the normal interval it is not empty at 0 of n or n of n (lm-eval's stderr is 0
    there), and it stays inside [0, 1]. NaN for n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar test on the discordant pairs of a paired 2x2 table.

    b = questions only run A got right, c = only run B got right. Under H0 (same accuracy)
    each discordant pair goes either way with probability 1/2, so with n = b + c:

        p = min(1, 2 * sum_{k=0}^{min(b, c)} C(n, k) / 2^n)

    p = 1 when there are no discordant pairs (nothing tells the runs apart)."""
    assert b >= 0 and c >= 0, "counts are non-negative"
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap(b: int, c: int, n: int, seed: int = 0,
                     resamples: int = 10_000) -> tuple[float, float]:
    """95% percentile bootstrap interval for acc_B - acc_A over n paired questions.

    Each question's difference d_i = correct_B - correct_A is -1 (b of them), +1 (c of them)
    or 0. Resampling n questions with replacement is the same as drawing the counts
    (b*, c*, rest) ~ Multinomial(n; b/n, c/n, 1 - (b+c)/n), so each resample's mean is
    (c* - b*) / n; the interval is the 2.5th and 97.5th percentile of those means. Seeded."""
    import numpy as np

    assert 0 <= b + c <= n and n > 0, "discordant pairs are a part of the n questions"
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [b / n, c / n, 1 - (b + c) / n], size=resamples)
    diffs = (counts[:, 1] - counts[:, 0]) / n
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


# --- stratified samples -------------------------------------------------------------------

def allocate(sizes: Mapping[str, int], n: int) -> dict[str, int]:
    """Proportional allocation of n sample units to strata with largest-remainder rounding.

    Quota q_h = n * N_h / N; each stratum first gets floor(q_h), then the units still left go
    one each to the largest remainders q_h - floor(q_h) (ties: the stratum named first in
    sorted order). The result sums to n exactly and never exceeds a stratum's size."""
    total = sum(sizes.values())
    assert 0 < n <= total, f"a sample of {n} from {total} units"
    quotas = {h: n * size / total for h, size in sizes.items()}
    alloc = {h: math.floor(q) for h, q in quotas.items()}
    left = n - sum(alloc.values())
    by_remainder = sorted(sizes, key=lambda h: (-(quotas[h] - alloc[h]), h))
    for h in by_remainder[:left]:
        alloc[h] += 1
    assert all(alloc[h] <= sizes[h] for h in sizes), "allocation within stratum sizes"
    return alloc


@dataclass(frozen=True, slots=True)
class Estimate:
    """A population accuracy estimate with its standard error."""

    acc: float
    stderr: float
    n: int  # questions scored
    population: int  # questions the estimate is about


def stratified_estimate(strata: Mapping[str, Sequence[float]],
                        sizes: Mapping[str, int]) -> Estimate:
    """Stratified-sample mean and its standard error with the finite population correction.

    With N_h questions in stratum h (N = sum N_h), W_h = N_h / N, n_h sampled, mean p_h and
    sample variance s_h^2 (divisor n_h - 1):

        p_st = sum_h W_h p_h
        SE   = sqrt( sum_h W_h^2 (1 - n_h / N_h) s_h^2 / n_h )

    A stratum with a single sampled question has no s_h^2 of its own; it borrows the variance
    of all sampled questions pooled (divisor n - 1). Strata not sampled are left out of both
    sums, so p_st then estimates the sampled strata. NaN SE for fewer than 2 questions."""
    sampled = {h: xs for h, xs in strata.items() if xs}
    everything = [x for xs in sampled.values() for x in xs]
    n = len(everything)
    total = sum(sizes[h] for h in sampled)
    acc = sum(sizes[h] / total * _mean(xs) for h, xs in sampled.items())
    if n < 2:
        return Estimate(acc, math.nan, n, total)
    pooled = _variance(everything)
    var = 0.0
    for h, xs in sampled.items():
        w, fpc = sizes[h] / total, 1 - len(xs) / sizes[h]
        s2 = _variance(xs) if len(xs) > 1 else pooled
        var += w * w * fpc * s2 / len(xs)
    return Estimate(acc, math.sqrt(var), n, total)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _variance(xs: Sequence[float]) -> float:
    mu = _mean(xs)
    return sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)


def macro_average(units: Mapping[str, Sequence[float]], z: float = Z95) -> tuple[Estimate, float,
                                                                                 float]:
    """The macro average over units (each subject or category weighs the same: Meta's
    macro_avg), its standard error and normal 95% interval, clipped to [0, 1].

    With U units, unit u's mean p_u over its n_u questions and sample variance s_u^2
    (divisor n_u - 1):

        macro = (1/U) sum_u p_u
        SE    = (1/U) sqrt( sum_u s_u^2 / n_u )

    the units being independent samples (each its own stratum, weights 1/U, no finite
    population correction: as lm-eval's per-subject stderr, the questions stand for a larger
    pool). A unit with a single question has no s_u^2 of its own; it borrows the variance of
    all questions pooled, as stratified_estimate does. The interval is macro +- z SE; NaN for
    fewer than 2 questions. `Estimate.population` is U, the number of units."""
    present = {u: xs for u, xs in units.items() if xs}
    everything = [x for xs in present.values() for x in xs]
    n, k = len(everything), len(present)
    if not k:
        return Estimate(math.nan, math.nan, 0, 0), math.nan, math.nan
    acc = sum(_mean(xs) for xs in present.values()) / k
    if n < 2:
        return Estimate(acc, math.nan, n, k), math.nan, math.nan
    pooled = _variance(everything)
    var = sum((_variance(xs) if len(xs) > 1 else pooled) / len(xs) for xs in present.values())
    se = math.sqrt(var) / k
    low, high = normal_interval(acc, se, z)
    return Estimate(acc, se, n, k), max(0.0, low), min(1.0, high)


# --- calibration -------------------------------------------------------------------------

def softmax(loglikelihoods: Sequence[float | None]) -> list[float | None]:
    """p_i = exp(l_i - m) / sum_j exp(l_j - m) over the letters present (m = max l_j, for
    stability). A missing letter (None) stays None and takes no probability mass."""
    present = [ll for ll in loglikelihoods if ll is not None]
    if not present:
        return [None] * len(loglikelihoods)
    m = max(present)
    z = sum(math.exp(ll - m) for ll in present)
    return [None if ll is None else math.exp(ll - m) / z for ll in loglikelihoods]


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    low: float
    high: float
    n: int
    confidence: float  # mean top probability in the bin (NaN when empty)
    accuracy: float  # share correct in the bin (NaN when empty)


def calibration(confidences: Sequence[float], correct: Sequence[bool],
                bins: int = 10) -> tuple[list[CalibrationBin], float]:
    """Reliability bins and the expected calibration error (ECE) of top-choice confidences.

    Bin k holds confidences in (k/B, (k+1)/B] (the first bin also takes 0). With n_k
    questions in bin k, mean confidence conf_k and accuracy acc_k, over N questions:

        ECE = sum_k (n_k / N) |acc_k - conf_k|

    ECE is NaN with no questions."""
    assert len(confidences) == len(correct), "one correctness per confidence"
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, p in enumerate(confidences):
        # 1e-9: 0.3 * 10 is 3.0000000000000004 in floating point, and 0.3 belongs in (0.2, 0.3]
        members[min(bins - 1, max(0, math.ceil(p * bins - 1e-9) - 1))].append(i)
    out, ece, total = [], 0.0, len(confidences)
    for k, idx in enumerate(members):
        conf = _mean([confidences[i] for i in idx]) if idx else math.nan
        acc = _mean([1.0 if correct[i] else 0.0 for i in idx]) if idx else math.nan
        out.append(CalibrationBin(k / bins, (k + 1) / bins, len(idx), conf, acc))
        if idx:
            ece += len(idx) / total * abs(acc - conf)
    return out, (ece if total else math.nan)
