"""Generative runs print and write lm-eval 0.4.13's names: exact_match under the format's
filters, and the task names, aliases and versions of lm-eval's mmlu_generative and
mmlu_flan_cot_zeroshot YAMLs.

The expected tables are lm-eval 0.4.13's own `lm_eval.utils.make_table` applied to these
results (its real runs of both tasks on anatomy and virology print the same names, versions,
filters and column layout; values chosen with four significant decimals, where pytablewriter
prints every value to four)."""

from __future__ import annotations

import json

import pytest

from mmlu_bench import cli, report, summary
from mmlu_bench.lmeval_names import Naming
from mmlu_bench.schema import GroupResult, QuestionRecord

from .conftest import run_header
from .test_reports import run_cli as run

COT = """\
|               Tasks               |Version|     Filter     |n-shot|  Metric   |   |Value |   |Stderr|
|-----------------------------------|-------|----------------|-----:|-----------|---|-----:|---|-----:|
|mmlu (flan style, zeroshot cot)    |      2|flexible-extract|      |exact_match|   |0.8333|±  |0.1667|
|                                   |       |strict-match    |      |exact_match|   |0.5000|±  |0.2357|
| - mmlu_flan_cot_zeroshot::other   |N/A    |flexible-extract|     0|exact_match|↑  |1.0000|±  |0.0000|
|                                   |       |strict-match    |     0|exact_match|↑  |0.6667|±  |0.3333|
|  - mmlu_flan_cot_zeroshot_virology|      3|flexible-extract|     0|exact_match|↑  |1.0000|±  |0.0000|
|                                   |       |strict-match    |     0|exact_match|↑  |0.6667|±  |0.3333|
| - mmlu_flan_cot_zeroshot::stem    |N/A    |flexible-extract|     0|exact_match|↑  |0.6667|±  |0.3333|
|                                   |       |strict-match    |     0|exact_match|↑  |0.3333|±  |0.3333|
|  - mmlu_flan_cot_zeroshot_anatomy |      3|flexible-extract|     0|exact_match|↑  |0.6667|±  |0.3333|
|                                   |       |strict-match    |     0|exact_match|↑  |0.3333|±  |0.3333|

|             Groups             |Version|     Filter     |n-shot|  Metric   |   |Value |   |Stderr|
|--------------------------------|-------|----------------|-----:|-----------|---|-----:|---|-----:|
|mmlu (flan style, zeroshot cot) |      2|flexible-extract|      |exact_match|   |0.8333|±  |0.1667|
|                                |       |strict-match    |      |exact_match|   |0.5000|±  |0.2357|
| - mmlu_flan_cot_zeroshot::other|N/A    |flexible-extract|     0|exact_match|↑  |1.0000|±  |0.0000|
|                                |       |strict-match    |     0|exact_match|↑  |0.6667|±  |0.3333|
| - mmlu_flan_cot_zeroshot::stem |N/A    |flexible-extract|     0|exact_match|↑  |0.6667|±  |0.3333|
|                                |       |strict-match    |     0|exact_match|↑  |0.3333|±  |0.3333|
"""

GENERATIVE = """\
|          Tasks          |Version|   Filter   |n-shot|  Metric   |   |Value |   |Stderr|
|-------------------------|-------|------------|-----:|-----------|---|-----:|---|-----:|
|mmlu (generative)        |      3|get_response|      |exact_match|   |0.5000|±  |0.2357|
| - mmlu_generative::other|N/A    |get_response|     0|exact_match|↑  |0.6667|±  |0.3333|
|  - virology             |      3|get_response|     0|exact_match|↑  |0.6667|±  |0.3333|
| - mmlu_generative::stem |N/A    |get_response|     0|exact_match|↑  |0.3333|±  |0.3333|
|  - anatomy              |      3|get_response|     0|exact_match|↑  |0.3333|±  |0.3333|

|         Groups          |Version|   Filter   |n-shot|  Metric   |   |Value |   |Stderr|
|-------------------------|-------|------------|-----:|-----------|---|-----:|---|-----:|
|mmlu (generative)        |      3|get_response|      |exact_match|   |0.5000|±  |0.2357|
| - mmlu_generative::other|N/A    |get_response|     0|exact_match|↑  |0.6667|±  |0.3333|
| - mmlu_generative::stem |N/A    |get_response|     0|exact_match|↑  |0.3333|±  |0.3333|
"""

# (primary filter right, second filter right) per question; gold is always A.
VERDICTS = {"anatomy": [(1, 1), (0, 1), (0, 0)], "virology": [(1, 1), (1, 1), (0, 1)]}


def build(fmt: str):
    records = []
    for subject, verdicts in VERDICTS.items():
        for i, (first, second) in enumerate(verdicts):
            others = {"flexible-extract": "A" if second else "C"} if fmt == "cot" else {}
            records.append(QuestionRecord(
                f"{subject}/{i}", subject, i, 0, (), 0 if first else 1, bool(first), "", 0,
                response="...", answer="A" if first else "B", filters=others, n_options=4))
    header = run_header(limit=3, backend_info={"settings": {"format": fmt}})
    return header, summary.build(header, records)


@pytest.mark.parametrize("fmt,expected", [("cot", COT), ("generative", GENERATIVE)])
def test_tables_are_lm_evals(fmt, expected):
    _, s = build(fmt)
    assert report.full_table(s).startswith(expected + "\n")


def test_cot_says_where_its_group_rows_differ_from_lm_eval():
    _, s = build("cot")
    assert "lm-eval 0.4.13 prints no mmlu_flan_cot_zeroshot" in report.full_table(s)
    assert "lm-eval 0.4.13 prints no" not in report.full_table(build("generative")[1])


def test_generative_results_json_keys():
    header, s = build("generative")
    out = report.results_json(s, header)
    names = ["mmlu_generative", "mmlu_generative::other", "mmlu_virology_generative",
             "mmlu_generative::stem", "mmlu_anatomy_generative"]
    assert list(out["results"]) == names
    assert out["results"]["mmlu_anatomy_generative"] == {
        "alias": "  - anatomy", "exact_match,get_response": pytest.approx(1 / 3),
        "exact_match_stderr,get_response": pytest.approx(1 / 3), "sample_len": 3}
    assert out["results"]["mmlu_generative"]["alias"] == "mmlu (generative)"
    assert list(out["groups"]) == [names[0], names[1], names[3]]
    assert out["group_subtasks"] == {"mmlu_generative": [names[1], names[3]],
                                     names[1]: [names[2]], names[3]: [names[4]]}
    assert out["versions"] == {names[0]: 3, names[1]: "N/A", names[2]: 3, names[3]: "N/A",
                               names[4]: 3}
    assert out["higher_is_better"][names[4]] == {"exact_match": True}
    assert not any("acc,none" in e for e in out["results"].values())


def test_cot_results_json_has_both_filters_primary_first():
    header, s = build("cot")
    out = report.results_json(s, header)
    unit = out["results"]["mmlu_flan_cot_zeroshot_virology"]
    assert list(unit) == ["alias", "exact_match,strict-match",
                          "exact_match_stderr,strict-match", "exact_match,flexible-extract",
                          "exact_match_stderr,flexible-extract", "sample_len"]
    assert unit["alias"] == "  - mmlu_flan_cot_zeroshot_virology"  # no task_alias in its YAML
    assert unit["exact_match,flexible-extract"] == 1.0
    assert unit["exact_match_stderr,flexible-extract"] == 0.0
    top = out["results"]["mmlu_flan_cot_zeroshot"]
    assert top["exact_match,strict-match"] == s.acc == 0.5
    assert top["exact_match,flexible-extract"] == pytest.approx(5 / 6)
    assert out["versions"]["mmlu_flan_cot_zeroshot"] == 2
    assert set(out["groups"]) == {"mmlu_flan_cot_zeroshot", "mmlu_flan_cot_zeroshot::other",
                                  "mmlu_flan_cot_zeroshot::stem"}


def test_rows_keep_their_names_for_compare_and_html():
    """Only the key, alias and version change: compare and the HTML page match rows by
    name, so a generative run compares with a log-likelihood one subject by subject."""
    _, s = build("cot")
    assert [g.name for g in s.rows] == ["mmlu", "other", "virology", "stem", "anatomy"]


def test_a_task_without_lm_eval_names_keeps_its_own():
    rows = (GroupResult("mmlu_pro", 0, 0.5, 0.1, 2, key="leaderboard_mmlu_pro"),)
    naming = Naming("exact_match", ("get_response",), {})
    assert naming.rows("mmlu_pro", rows) == rows and naming.note("mmlu_pro") == ""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mmlu_dir):
    root = tmp_path_factory.mktemp("gen_names")
    common = ["--model", "fake:x", "--data-dir", str(mmlu_dir), "--subjects",
              "anatomy,virology", "--limit", "4", "--no-progress"]
    for name, extra in {"plain": [], "generative": ["--format", "generative"],
                        "simple": ["--format", "simple-evals"]}.items():
        assert cli.main(["run", *common, *extra, "--output", str(root / name)]) == 0
    return root


def test_cli_generative_run_prints_and_writes_lm_evals_names(runs, capsys):
    printed = run(capsys, "report", str(runs / "generative"))
    assert printed == (runs / "generative" / "results.md").read_text()
    lines = printed.splitlines()
    assert lines[1].startswith("|          Tasks          |Version|   Filter   |n-shot|  Metric")
    assert lines[3].startswith("|mmlu (generative)        |      3|get_response|      |"
                               "exact_match|   |")
    assert "| - mmlu_generative::other|N/A    |get_response|     0|exact_match|↑  |" in printed
    assert "|acc " not in printed and "|none " not in printed
    results = json.loads((runs / "generative" / "results.json").read_text())
    assert "exact_match,get_response" in results["results"]["mmlu_anatomy_generative"]
    md = run(capsys, "report", str(runs / "generative"), "--format", "markdown")
    assert "|mmlu (generative)" in md and "|exact_match|" in md and "|acc " not in md


def test_simple_evals_is_exact_match_under_its_own_filter_and_mmlus_names(runs):
    results = json.loads((runs / "simple" / "results.json").read_text())
    assert set(results["results"]) == {"mmlu", "mmlu_other", "mmlu_virology", "mmlu_stem",
                                       "mmlu_anatomy"}
    assert set(results["results"]["mmlu"]) == {"alias", "exact_match,simple-evals",
                                               "exact_match_stderr,simple-evals", "sample_len"}


def test_compare_and_runs_take_generative_runs(runs, capsys):
    out = run(capsys, "compare", str(runs / "plain"), str(runs / "generative"))
    subjects = out.split("By subject")[1].split("\n\n")[0]
    assert "anatomy" in subjects and "virology" in subjects and "n/a" not in subjects
    assert "stem" in out.split("By category:")[1].split("By subject")[0]
    listing = run(capsys, "runs", str(runs))
    assert "generative" in listing and "simple" in listing
    html = (runs / "generative" / "report.html").read_text()
    assert "anatomy" in html
