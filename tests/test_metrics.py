"""Metrics against hand-computed cases and lm-eval's reference numbers."""

from __future__ import annotations

import json
import math

import pytest

from mmlu_bench import metrics, report, scoring
from mmlu_bench.schema import QuestionRecord
from mmlu_bench import summary
from mmlu_bench.tasks.mmlu import MMLU

from .conftest import REFERENCE_0SHOT, run_header


def rec(subject: str, index: int, correct: bool) -> QuestionRecord:
    lls = (-1.0, -2.0, -3.0, -4.0)
    return QuestionRecord(f"{subject}/{index}", subject, index, 0 if correct else 1, lls, 0,
                          correct, "", 10)


@pytest.mark.parametrize("xs, mean, stderr", [
    ([1, 0, 1, 1], 0.75, 0.25),                 # sd = 0.5 (n-1), / sqrt(4)
    ([1, 1, 1], 1.0, 0.0),
    ([0, 1], 0.5, 0.5),                         # sd = sqrt(0.5), / sqrt(2)
])
def test_mean_and_sample_stderr(xs, mean, stderr):
    assert metrics.mean(xs) == pytest.approx(mean)
    assert metrics.mean_stderr(xs) == pytest.approx(stderr)


def test_stderr_of_one_value_is_nan_and_prints_na():
    assert math.isnan(metrics.mean_stderr([1.0]))
    assert "N/A" in report._fmt(math.nan)


def test_pooled_stderr_hand_case():
    # two groups: n=4 se=0.25, n=2 se=0.5 -> ((3*4*0.0625) + (1*2*0.25)) / (6-2) / 6
    expected = math.sqrt((3 * 4 * 0.0625 + 1 * 2 * 0.25) / 4 / 6)
    assert metrics.pooled_stderr([0.25, 0.5], [4, 2]) == pytest.approx(expected)


def test_group_accuracy_is_weighted_by_questions_not_subjects():
    records = [rec("anatomy", i, True) for i in range(3)] + [rec("virology", 0, False)]
    rows = metrics.summarize(records, MMLU(), 0)
    top = rows[0]
    assert (top.name, top.n) == ("mmlu", 4) and top.acc == pytest.approx(0.75)
    names = [r.name for r in rows]
    assert names == ["mmlu", "other", "virology", "stem", "anatomy"]


def test_reference_run_gives_lm_evals_table_numbers():
    """lm-eval 0.4.13 printed mmlu acc 0.2596 and stderr 0.0185 for these records."""
    records = []
    for line in REFERENCE_0SHOT.open():
        r = json.loads(line)
        pred = scoring.predict(tuple(r["loglikelihoods"]))
        assert pred == r["pred"]
        records.append(QuestionRecord(f"{r['subject']}/{r['doc_id']}", r["subject"], r["doc_id"],
                                      r["gold"], tuple(r["loglikelihoods"]), pred,
                                      pred == r["gold"], r["prompt_sha256"], 0))
    s = summary.build(run_header(), records)
    assert f"{s.rows[0].acc:.4f}" == "0.2596" and f"{s.rows[0].stderr:.4f}" == "0.0185"
    table = report.full_table(s)
    lines = table.splitlines()
    # lm-eval 0.4.13's layout: no arrow and no shots on the mmlu row; shots on category rows.
    assert lines[2].startswith("|mmlu ") and lines[2].endswith(
        "|      2|none  |      |acc   |   |0.2596|±  |0.0185|")
    assert lines[3].startswith("| - humanities ") and "|     0|acc   |↑  |" in lines[3]
    assert "| - social sciences" in table and "|  - formal_logic" in table


def test_headers_are_centred_as_pytablewriter_centres_them():
    """An odd space goes right: lm-eval 0.4.13 prints "|   Groups    |" for the 13-wide
    Groups column of a humanities-only run, where str.center would print "|    Groups   |"."""
    s = summary.build(run_header(), [rec("formal_logic", i, i == 0) for i in range(2)])
    assert "\n|   Groups    |Version|" in report.full_table(s)


def test_predict_ties_and_missing_letters():
    assert scoring.predict((-1.0, -1.0, -2.0, -3.0)) == 0
    assert scoring.predict((None, -3.0, None, -2.0)) == 3
    assert scoring.predict((None, None, None, None)) == -1
