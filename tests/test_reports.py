"""report --format, compare, runs and --sample through the CLI (fake backend), and the
report and compare of two real SmolLM2 runs."""

from __future__ import annotations

import json

import pytest

from mmlu_bench import cli, comparison, listing, load_run
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import ConfigError
from mmlu_bench.records import RECORDS, read

SUBJECTS = "anatomy,virology,formal_logic,econometrics"


def run_cli(capsys, *argv: str) -> str:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory, mmlu_dir):
    """runs/: fake models a (0-shot and 1-shot, first 10) and b (0-shot, sample of 30)."""
    root = tmp_path_factory.mktemp("runs")
    common = ["--data-dir", str(mmlu_dir), "--subjects", SUBJECTS, "--no-progress"]
    made = {"a0": ["--model", "fake:a", "--limit", "10"],
            "a1": ["--model", "fake:a", "--limit", "10", "--num-fewshot", "1"],
            "b0": ["--model", "fake:b", "--limit", "10"],
            "s30": ["--model", "fake:b", "--sample", "30", "--seed", "4"]}
    for name, args in made.items():
        assert cli.main(["run", *args, *common, "--output", str(root / name)]) == 0
    return root


def test_report_formats_rebuild_from_records(fake_runs, capsys):
    run = fake_runs / "a0"
    assert run_cli(capsys, "report", str(run)).strip() == (run / "results.md").read_text().strip()
    as_json = json.loads(run_cli(capsys, "report", str(run), "--format", "json"))
    assert as_json == json.loads((run / "results.json").read_text())
    mmlu = as_json["results"]["mmlu"]
    assert set(mmlu) >= {"acc,none", "acc_stderr,none", "alias"}
    assert as_json["groups"].keys() == {"mmlu", "mmlu_humanities", "mmlu_other",
                                        "mmlu_social_sciences", "mmlu_stem"}
    # lm-eval 0.4.13 holds a group's version as text ("2"), a task's as a number (1.0)
    assert as_json["n-shot"]["mmlu_anatomy"] == 0 and as_json["versions"]["mmlu"] == "2"
    assert as_json["versions"]["mmlu_anatomy"] == 1.0
    md = run_cli(capsys, "report", str(run), "--format", "markdown")
    assert md.startswith("# MMLU: `a`") and "**Accuracy:" in md and "|mmlu " in md
    page = run_cli(capsys, "report", str(run), "--format", "html")
    assert page == (run / "report.html").read_text()
    assert 'id="chart-subjects"' in page


def test_report_without_records_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path), "--format", "json"]) == 2
    assert "no records.jsonl here" in capsys.readouterr().err


def test_sample_run_records_sample_and_seed_and_reports_the_estimate(fake_runs):
    header, records, _ = read(fake_runs / "s30" / RECORDS)
    assert (header.sample, header.seed, len(records)) == (30, 4, 30)
    assert header.population == {"anatomy": 135, "econometrics": 114, "formal_logic": 126,
                                    "virology": 166}  # the 4 test files
    results = json.loads((fake_runs / "s30" / "results.json").read_text())
    assert results["sample"]["n"] == 30 and results["sample"]["population"] == 541
    low, high = results["sample"]["ci95"]
    assert low < results["sample"]["acc"] < high
    assert "Stratified sample of 30 of 541" in (fake_runs / "s30" / "results.md").read_text()
    assert read(fake_runs / "a0" / RECORDS)[0].sample is None
    assert "stratified-sample estimate" in (fake_runs / "s30" / "report.html").read_text()


def test_sample_config_rules():
    with pytest.raises(ConfigError, match="--sample and --limit"):
        RunConfig.from_spec("fake:x", sample=10, limit=5)
    with pytest.raises(ConfigError, match="positive"):
        RunConfig.from_spec("fake:x", sample=0)
    assert RunConfig.from_spec("fake:x", sample=100).output_dir().name == "fake_x_0shot_sample100"
    assert RunConfig.from_spec("fake:x", sample=100, seed=2).output_dir().name == \
        "fake_x_0shot_sample100_seed2"


def test_sample_and_limit_together_exit_2(capsys):
    assert cli.main(["run", "--model", "fake:x", "--sample", "5", "--limit", "3"]) == 2
    assert "--sample and --limit" in capsys.readouterr().err


def test_sample_larger_than_the_test_set_is_a_clear_error(mmlu_dir, tmp_path, capsys):
    assert cli.main(["run", "--model", "fake:x", "--sample", "136", "--subjects", "anatomy",
                     "--data-dir", str(mmlu_dir), "--output", str(tmp_path)]) == 2
    assert "have 135 test questions" in capsys.readouterr().err


def test_resume_refuses_a_different_seed(fake_runs, mmlu_dir, capsys):
    argv = ["run", "--model", "fake:b", "--sample", "30", "--seed", "5", "--data-dir",
            str(mmlu_dir), "--subjects", SUBJECTS, "--output", str(fake_runs / "s30"),
            "--no-progress"]
    assert cli.main(argv) == 2
    assert "seed" in capsys.readouterr().err


def test_compare_warns_about_shots_and_question_sets(fake_runs, capsys):
    out = run_cli(capsys, "compare", str(fake_runs / "a0"), str(fake_runs / "a1"),
                  str(fake_runs / "s30"))
    assert "B vs A, paired over shared questions" in out and "C vs A" in out
    assert "warning: different few-shot examples: 0 vs 1" in out
    assert "warning: different question sets" in out
    assert "By subject (largest drop first):" in out


def test_compare_of_a_run_with_itself_finds_no_difference(fake_runs):
    a = load_run(fake_runs / "a0")
    p = comparison.paired(a, a)
    assert (p.only_a, p.only_b, p.p_value, p.low, p.high) == (0, 0, 1.0, 0.0, 0.0)
    assert comparison.verdict(p).startswith("No clear difference")
    assert comparison.warnings(a, a) == []


def test_runs_lists_and_sorts(fake_runs, capsys):
    out = run_cli(capsys, "runs", str(fake_runs), "--sort", "model")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run", "model", "backend"]
    assert len(lines) == 5 and "sample" in out
    rows = listing.find(fake_runs)
    by_acc = listing.sort(rows, "acc")
    assert [r.acc for r in by_acc] == sorted((r.acc for r in rows), reverse=True)
    assert [r.model for r in listing.sort(rows, "model")] == ["a", "a", "b", "b"]
    dates = [r.date for r in listing.sort(rows, "date")]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.slow
def test_real_smollm2_report_and_compare(smollm2_runs, capsys):
    zero, one = smollm2_runs
    results = json.loads(run_cli(capsys, "report", str(zero), "--format", "json"))
    assert results["results"]["mmlu"]["sample_len"] == 10
    assert results["config"]["backend"] == "hf"
    out = run_cli(capsys, "compare", str(zero), str(one))
    assert "warning: different few-shot examples: 0 vs 1" in out
    assert "different question sets" not in out  # the same 10 test questions
    p = comparison.paired(load_run(zero), load_run(one))
    assert p.n == 10 and 0 < p.p_value <= 1
    assert comparison.verdict(p).split(":")[0] in ("No clear difference", "Borderline",
                                                "B is better than A", "B is worse than A")
