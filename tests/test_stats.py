"""stats.py and sampling.py against hand-computed and textbook cases."""

from __future__ import annotations

import math
import random

import pytest

from mmlu_bench import dataset, sampling, stats
from mmlu_bench.schema import Question
from mmlu_bench.tasks.mmlu import SUBJECTS


@pytest.mark.parametrize("b, c, p", [
    (1, 6, 0.125),  # 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128
    (6, 1, 0.125),  # symmetric
    (0, 5, 0.0625),  # 2 / 2^5
    (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 1024
    (0, 1, 1.0),  # 2 * 1/2, capped at 1
    (3, 3, 1.0),  # a balanced table
    (0, 0, 1.0),  # no discordant pairs
    (0, 10, 2 / 1024),
])
def test_mcnemar_exact_small_tables(b, c, p):
    assert stats.mcnemar_exact(b, c) == pytest.approx(p, abs=1e-12)


def test_paired_bootstrap_is_seeded_and_brackets_the_observed_difference():
    first = stats.paired_bootstrap(20, 35, 200, seed=7)
    assert first == stats.paired_bootstrap(20, 35, 200, seed=7)
    # with few resamples the seed shows (with 10,000 the percentiles barely move)
    assert len({stats.paired_bootstrap(20, 35, 200, seed=s, resamples=40) for s in range(5)}) > 1
    low, high = first
    assert low < (35 - 20) / 200 < high
    assert stats.paired_bootstrap(0, 0, 50) == (0.0, 0.0)  # identical answers: no spread


def test_paired_bootstrap_covers_the_true_difference_about_95_percent():
    """200 simulated paired runs with a known difference: the interval should hold it in
    about 95% of them (binomial sd at 200 simulations is 1.5 points)."""
    rng = random.Random(2024)
    n, p_a, p_b, agree = 300, 0.6, 0.65, 0.7
    true_diff = (agree * p_a + (1 - agree) * p_b) - p_a  # B copies A 70% of the time
    covered = 0
    for sim in range(200):
        a = [rng.random() < p_a for _ in range(n)]
        b_ = [x if rng.random() < agree else rng.random() < p_b for x in a]
        only_a = sum(x and not y for x, y in zip(a, b_))
        only_b = sum(y and not x for x, y in zip(a, b_))
        low, high = stats.paired_bootstrap(only_a, only_b, n, seed=sim, resamples=2000)
        covered += low <= true_diff <= high
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_allocate_largest_remainder():
    # quotas 7 * (10, 20, 30) / 60 = 1.17, 2.33, 3.5: floors 1, 2, 3, the last unit to 3.5
    assert stats.allocate({"a": 10, "b": 20, "c": 30}, 7) == {"a": 1, "b": 2, "c": 4}
    # equal remainders: the first by name wins
    assert stats.allocate({"x": 5, "y": 5}, 3) == {"x": 2, "y": 1}
    assert stats.allocate({"a": 3, "b": 1}, 4) == {"a": 3, "b": 1}  # a census


def test_allocate_on_real_subject_sizes_sums_exactly(mmlu_dir):
    data = dataset.load(str(mmlu_dir), SUBJECTS)
    sizes = {s: len(q) for s, q in data.test.items()}
    for n in (1, 57, 100, 1000, 14042):
        alloc = stats.allocate(sizes, n)
        assert sum(alloc.values()) == n
        assert all(abs(alloc[s] - n * sizes[s] / 14042) < 1 for s in sizes)


def _questions(subject: str, count: int) -> tuple[Question, ...]:
    return tuple(Question(subject, i, f"q{i}", ("a", "b", "c", "d"), i % 4) for i in range(count))


def test_sample_is_seeded_deterministic_and_in_file_order():
    test = {"anatomy": _questions("anatomy", 40), "virology": _questions("virology", 60)}
    one = sampling.select(test, 10, seed=0)
    assert one == sampling.select(test, 10, seed=0)
    assert [len(one["anatomy"]), len(one["virology"])] == [4, 6]
    assert all(list(qs) == sorted(qs, key=lambda q: q.index) for qs in one.values())
    assert one != sampling.select(test, 10, seed=1)
    # pinned: the same questions on every machine and Python run
    pinned = sampling.select(test, 5, seed=0)
    assert [q.index for q in pinned["anatomy"]] == [23, 26]
    assert [q.index for q in pinned["virology"]] == [25, 26, 32]


def test_stratified_estimate_by_hand():
    """N = (10, 30), samples [1,0,1,1] and [0,0,1]:
    W = (.25, .75); p = (.75, 1/3); s^2 = (.25, 1/3)
    p_st = .25 * .75 + .75 / 3 = .4375
    var = .25^2 (1 - 4/10) .25 / 4 + .75^2 (1 - 3/30) (1/3) / 3 = .00234375 + .05625"""
    est = stats.stratified_estimate({"h1": [1, 0, 1, 1], "h2": [0, 0, 1]}, {"h1": 10, "h2": 30})
    assert est.acc == pytest.approx(0.4375)
    assert est.stderr == pytest.approx(math.sqrt(0.00234375 + 0.05625))
    assert (est.n, est.population) == (7, 40)


def test_stratified_estimate_census_and_single_question_strata():
    census = stats.stratified_estimate({"a": [1, 0], "b": [1]}, {"a": 2, "b": 1})
    assert census.stderr == 0.0  # every question scored: the finite population correction is 0
    # a stratum with one sampled question borrows the pooled variance of all 4 sampled:
    # pooled s^2 of [1, 0, 1, 0] = 1/3; W = (.5, .5)
    est = stats.stratified_estimate({"a": [1, 0, 1], "b": [0]}, {"a": 10, "b": 10})
    var = 0.25 * 0.7 * (1 / 3) / 3 + 0.25 * 0.9 * (1 / 3) / 1
    assert est.stderr == pytest.approx(math.sqrt(var))
    assert math.isnan(stats.stratified_estimate({"a": [1]}, {"a": 5}).stderr)


def test_softmax_skips_missing_letters():
    probs = stats.softmax([math.log(0.2), None, math.log(0.6), math.log(0.2)])
    assert probs[1] is None
    assert probs[0] == pytest.approx(0.2) and probs[2] == pytest.approx(0.6)
    assert stats.softmax([None, None]) == [None, None]


def test_calibration_ece_by_hand():
    # bin (.8, .9]: confidence .9, accuracy .5; bin (.5, .6]: confidence .6, accuracy 1
    # ECE = .5 * |.5 - .9| + .5 * |1 - .6| = .4
    bins, ece = stats.calibration([0.9, 0.9, 0.6, 0.6], [True, False, True, True])
    assert ece == pytest.approx(0.4)
    assert [b.n for b in bins] == [0, 0, 0, 0, 0, 2, 0, 0, 2, 0]
    assert stats.calibration([0.3], [True])[0][2].n == 1  # 0.3 sits in (0.2, 0.3]
    assert stats.calibration([0.25, 0.25], [True, False])[1] == pytest.approx(0.25)
