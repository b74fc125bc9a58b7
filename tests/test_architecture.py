"""docs/architecture.md's examples of a new task, format and backend are real: its code, run as
written, scores a made-up benchmark through the Python API and the CLI."""

from __future__ import annotations

import json
import re
import sys
import types

import pytest

import mmlu_bench
from mmlu_bench import backends, cli, formats, tasks
from mmlu_bench.backends.base import BackendSpec

from .conftest import ROOT

DOC = ROOT / "docs" / "architecture.md"
QUESTIONS = [("Which is a prime number?", ["4", "6", "7", "9"], 2),
             ("Which colour is the sky on a clear day?", ["green", "blue", "red"], 1),
             ("How many legs has a spider?", ["six", "eight", "ten", "four", "two"], 1)]


def blocks() -> dict[str, str]:
    """The page's python blocks by their first line (`# mmlu_bench/...`)."""
    out = {}
    for code in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S):
        first, _, body = code.partition("\n")
        out[first.removeprefix("# ").strip()] = body
    return out


@pytest.fixture
def extended(monkeypatch, tmp_path):
    """The three modules and their table rows from the page, in place for one test; the data
    folder of the made-up benchmark."""
    code = blocks()
    assert len(code) == 6, list(code)
    for path in ("mmlu_bench/tasks/tiny.py", "mmlu_bench/formats/cloze.py",
                 "mmlu_bench/backends/chance.py"):
        name = path.removesuffix(".py").replace("/", ".")
        module = types.ModuleType(name)
        module.__package__ = name.rpartition(".")[0]
        monkeypatch.setitem(sys.modules, name, module)
        exec(compile(code[path], path, "exec"), module.__dict__)  # noqa: S102
        assert len(code[path].strip().splitlines()) <= 30, f"{path}: a short example"
    for table, key in ((tasks.TASKS, "mmlu_bench/tasks/__init__.py, a row of TASKS"),
                       (formats.FORMATS, "mmlu_bench/formats/__init__.py, a row of FORMATS")):
        for name, row in eval("{" + code[key] + "}").items():  # noqa: S307
            monkeypatch.setitem(table, name, row)
    spec = eval(code["mmlu_bench/backends/__init__.py, a row of SPECS"].strip().rstrip(","),
                {"BackendSpec": BackendSpec})  # noqa: S307
    monkeypatch.setitem(backends.BACKENDS, spec.name, spec)
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "tiny.jsonl").write_text("".join(
        json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in QUESTIONS))
    return data


def test_the_pages_task_format_and_backend_run_together(extended, tmp_path):
    result = mmlu_bench.evaluate("chance:7", task="tiny", format="cloze", data_dir=str(extended),
                                 output=tmp_path / "run", progress=False)
    assert [r.qid for r in result.records] == ["tiny/0", "tiny/1", "tiny/2"]
    assert [len(r.loglikelihoods) for r in result.records] == [4, 3, 5]
    assert result.header.prompt_format == "tiny-1/cloze-1" and result.header.task == "tiny"
    assert [g.key for g in result.summary.rows] == ["tiny"] and result.summary.n == 3
    assert result.results()["results"]["tiny"]["sample_len"] == 3
    assert "How many legs has a spider?" in result.report("html")  # the data is still there
    again = mmlu_bench.evaluate("chance:7", task="tiny", format="cloze",
                                data_dir=str(extended), output=tmp_path / "run", progress=False)
    assert again.scored == 0 and again.records == result.records, "resumed, the same numbers"


def test_the_cli_runs_them_too(extended, tmp_path, capsys):
    assert cli.main(["run", "--model", "chance:7", "--task", "tiny", "--format", "cloze",
                     "--data-dir", str(extended), "--output", str(tmp_path / "cli"),
                     "--no-progress"]) == 0
    assert "|tiny " in capsys.readouterr().out


def test_the_format_asks_what_the_page_says(extended):
    from mmlu_bench.formats.cloze import Cloze
    from mmlu_bench.tasks.tiny import Tiny

    task = Tiny()
    data = task.load(str(extended), ("tiny",))
    request = Cloze().requests(task, data.test["tiny"][2:], data, 0)[0]
    assert request.context == "Question: How many legs has a spider?\nAnswer:"
    assert request.continuations == (" six", " eight", " ten", " four", " two")
