"""The Python API (mmlu_bench.evaluate, load_run, compare, Result): the CLI's options and run
folders, typed results, resume and the folder lock, nothing printed; the notebook example on
the real demo model."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import mmlu_bench
from mmlu_bench import cli
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import ConfigError, UserError
from mmlu_bench.records import RECORDS, folder_lock
from mmlu_bench.schema import QuestionRecord, RunFooter, RunHeader, Summary

from .conftest import ROOT, require
from .test_cli import subparsers
from .test_resume import without_timing

SUBJECTS = "anatomy,virology"


def options(mmlu_dir: Path, **more) -> dict:
    return {"data_dir": str(mmlu_dir), "subjects": SUBJECTS, "limit": 20, "progress": False,
            **more}


def test_evaluate_takes_exactly_the_run_commands_options():
    """Every flag of `mmlu-bench run` is a keyword of evaluate (a RunConfig field) and the
    other way round, but the backend, which --model's prefix names."""
    dests = {a.dest for a in subparsers()["run"]._actions if a.dest != "help"}
    assert dests == {f.name for f in dataclasses.fields(RunConfig)} - {"backend"}
    documented = mmlu_bench.evaluate.__doc__
    missing = [d for d in sorted(dests) if not re.search(rf"\b{d}\b", documented)]
    assert missing == [], "every option is named in evaluate's docstring"
    with pytest.raises(ConfigError, match="unknown setting.*num_shots"):
        mmlu_bench.evaluate("fake:x", num_shots=5)


def test_evaluate_without_output_keeps_no_folder_and_prints_nothing(tmp_path, mmlu_dir,
                                                                    monkeypatch, capsys):
    import tempfile

    monkeypatch.chdir(tmp_path)  # the CLI's default folder would be runs/ here
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the records go
    result = mmlu_bench.evaluate("fake:x", **options(mmlu_dir))
    assert result.folder is None and result.finished and result.scored == 40
    assert list(tmp_path.iterdir()) == [tmp_path / "tmp"], "no run folder"
    assert not any((tmp_path / "tmp").iterdir()), "the records' temporary folder is gone"
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert isinstance(result.header, RunHeader) and isinstance(result.footer, RunFooter)
    assert isinstance(result.summary, Summary) and len(result.records) == 40
    assert all(isinstance(r, QuestionRecord) for r in result.records)
    assert result.header.backend_info["settings"]["output"] is None


def assert_same_run_elsewhere(a: Path, b: Path) -> None:
    """The same run in two folders: records.jsonl alike but for `started`, the timing and
    the folder the settings name."""
    mine, theirs = without_timing(a / RECORDS), without_timing(b / RECORDS)
    assert mine[1:] == theirs[1:]
    ha, hb = (json.loads(x)["header"] for x in (mine[0], theirs[0]))
    assert (ha["backend_info"]["settings"].pop("output"), hb["backend_info"]["settings"].pop(
        "output")) == (str(a), str(b))
    assert ha == hb


def test_evaluate_writes_the_folder_the_cli_writes(tmp_path, mmlu_dir, capsys):
    """The same options through the CLI and through evaluate: the same records, results and
    table, and load_run reads the folder back as the Result evaluate returned."""
    argv = ["run", "--model", "fake:x", "--data-dir", str(mmlu_dir), "--subjects", SUBJECTS,
            "--limit", "20", "--no-progress", "--output", str(tmp_path / "cli")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    result = mmlu_bench.evaluate("fake:x", output=tmp_path / "api", **options(mmlu_dir))
    assert result.folder == tmp_path / "api"
    assert_same_run_elsewhere(tmp_path / "cli", tmp_path / "api")
    assert (tmp_path / "api" / "report.html").is_file()
    assert printed.startswith(str(result)) and str(result) == result.report("table")
    assert str(result) == (tmp_path / "api" / "results.md").read_text()
    assert (tmp_path / "api" / "results.md").read_text() == (tmp_path / "cli" / "results.md"
                                                              ).read_text()
    back = mmlu_bench.load_run(tmp_path / "api")
    assert (back.header, back.records, back.footer, back.summary) == (
        result.header, result.records, result.footer, result.summary)
    assert back.scored == 0 and result.results() == json.loads(
        (tmp_path / "api" / "results.json").read_text())


def test_an_interrupted_evaluate_resumes_where_it_stopped(tmp_path, mmlu_dir, monkeypatch):
    from mmlu_bench.backends import fake

    reference = mmlu_bench.evaluate("fake:x", output=tmp_path / "reference", **options(mmlu_dir))
    real = fake.FakeBackend.score_groups

    def stops_after_two_batches(self, groups):
        for i, batch in enumerate(real(self, groups)):
            if i == 2:
                raise KeyboardInterrupt  # as Ctrl-C in a notebook
            yield batch

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(fake.FakeBackend, "score_groups", stops_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        mmlu_bench.evaluate("fake:x", output=tmp_path / "run", **options(mmlu_dir))
    assert {s: signal.getsignal(s) for s in before} == before, "signal handlers left alone"
    kept = (tmp_path / "run" / RECORDS).read_text().splitlines()
    assert len(kept) == 1 + 16 + 4, "the header and the two batches scored before Ctrl-C"
    monkeypatch.setattr(fake.FakeBackend, "score_groups", real)
    result = mmlu_bench.evaluate("fake:x", output=tmp_path / "run", **options(mmlu_dir))
    assert result.scored == 20 and result.finished
    assert_same_run_elsewhere(tmp_path / "reference", tmp_path / "run")
    again = mmlu_bench.evaluate("fake:x", output=tmp_path / "run", **options(mmlu_dir))
    assert again.scored == 0 and again.records == reference.records


def test_a_folder_in_use_is_refused_and_left_as_it_is(tmp_path, mmlu_dir):
    out = tmp_path / "run"
    mmlu_bench.evaluate("fake:x", output=out, **options(mmlu_dir))
    before = without_timing(out / RECORDS)
    with folder_lock(out), pytest.raises(UserError, match="another mmlu-bench run is using"):
        mmlu_bench.evaluate("fake:x", output=out, **options(mmlu_dir))
    assert without_timing(out / RECORDS) == before


def test_compare_returns_what_the_cli_prints(tmp_path, mmlu_dir, capsys):
    a = mmlu_bench.evaluate("fake:a", output=tmp_path / "a", **options(mmlu_dir))
    b = mmlu_bench.evaluate("fake:b", output=tmp_path / "b", **options(mmlu_dir, num_fewshot=1))
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert mmlu_bench.compare(a, b) == mmlu_bench.compare(tmp_path / "a", str(tmp_path / "b"))
    assert mmlu_bench.compare(a, b) == printed and "B vs A, paired" in printed
    memory = mmlu_bench.evaluate("fake:b", **options(mmlu_dir))
    assert "C: (no run folder)  fake:b" in mmlu_bench.compare(a, b, memory)
    with pytest.raises(UserError, match="two runs or more"):
        mmlu_bench.compare(a)


def test_to_pandas_has_one_row_per_record(mmlu_dir):
    require(__import__("importlib.util").util.find_spec("pandas") is not None,
            "pandas: pip install -e '.[test]'")
    result = mmlu_bench.evaluate("fake:x", format="cot", **options(mmlu_dir, limit=3))
    df = result.to_pandas()
    assert list(df.columns) == [f.name for f in dataclasses.fields(QuestionRecord)]
    assert len(df) == 6 and list(df["qid"]) == [r.qid for r in result.records]
    assert df["correct"].sum() == sum(r.correct for r in result.records)
    assert list(df["response"]) == [r.response for r in result.records]
    assert "fake:x" in repr(result) and "exact_match=" in repr(result)


def test_a_missing_capability_is_refused_before_the_backend_is_imported(mmlu_dir):
    """mlx: can neither generate nor apply a chat template: evaluate says so from the
    backend's spec, without importing mlx (or torch) and without loading anything."""
    code = ("import sys, mmlu_bench\n"
            "for asked in ({'format': 'generative'}, {'apply_chat_template': True}):\n"
            "    try:\n"
            "        mmlu_bench.evaluate('mlx:./no-such-model', subjects='anatomy', limit=1, "
            f"data_dir={str(mmlu_dir)!r}, progress=False, **asked)\n"
            "    except mmlu_bench.UserError as e:\n"
            "        print(e)\n"
            "print(sorted(m for m in ('mlx', 'mlx_lm', 'torch', 'transformers') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.splitlines()
    assert out == ["--format generative needs a backend that can generate; the mlx: backend "
                   "cannot: use another backend or format.",
                   "the mlx: backend cannot apply a chat template; leave out "
                   "--apply-chat-template, or use hf:, gguf:, vllm:, openai:, ollama:, fake:.", "[]"]


@pytest.mark.slow
def test_the_notebook_example_runs_on_the_demo_model(gguf_path):
    """examples/notebook.py as a user runs it (the bundled MMLU): evaluate on the demo model
    at limit 2 (all 57 subjects), the summary printed, a DataFrame made."""
    require(__import__("importlib.util").util.find_spec("pandas") is not None,
            "pandas: pip install -e '.[test]'")
    env = {k: v for k, v in os.environ.items() if k != "MMLU_DATA"}
    done = subprocess.run([sys.executable, "examples/notebook.py"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "|mmlu " in out and "| - humanities" in out and "|  - anatomy " in out
    assert "MMLU accuracy 0." in out and "over 114 questions" in out
    assert "qid" in out and "abstract_algebra/0" in out, "the DataFrame's head"
