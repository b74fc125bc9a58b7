"""Macro averages beside lm-eval's micro numbers, and `mmlu-bench published`: the figures, the
command for each, and a finished run of that command held against its model's figure (table
footer, results.json, report.html), matched by model name, GGUF file name or
--published-model."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shlex

import pytest

from mmlu_bench import cli, published, stats
from mmlu_bench.config import RunConfig
from mmlu_bench.tasks.mmlu import SUBJECTS


def test_macro_average_by_hand():
    units = {"a": [1.0, 0.0, 1.0], "b": [1.0, 1.0], "c": [0.0]}
    est, low, high = stats.macro_average(units)
    assert est.acc == pytest.approx((2 / 3 + 1 + 0) / 3)
    pooled = stats._variance([1.0, 0.0, 1.0, 1.0, 1.0, 0.0])  # c borrows all questions' s^2
    se = math.sqrt((1 / 3) / 3 + 0 / 2 + pooled / 1) / 3
    assert est.stderr == pytest.approx(se) and (est.n, est.population) == (6, 3)
    assert (low, high) == (pytest.approx(max(0.0, est.acc - stats.Z95 * se)),
                           pytest.approx(min(1.0, est.acc + stats.Z95 * se)))
    lone, low, _ = stats.macro_average({"a": [1.0]})
    assert lone.acc == 1.0 and math.isnan(lone.stderr) and math.isnan(low)


@pytest.mark.parametrize("noun,said", [("subjects", "subject"), ("categories", "category")])
def test_one_unit_reads_singular_and_results_json_keeps_the_kind(noun, said):
    from mmlu_bench.metrics import macro
    from mmlu_bench.schema import QuestionRecord

    one = [QuestionRecord(f"x/{i}", "x", i, 0, (0.0,) * 4, 0, True, "", 1) for i in range(2)]
    line, block = macro(one, noun)
    assert line.name.startswith(f"macro average over 1 {said} (")
    assert block["unit"] == noun and block["units"] == 1  # a field's value, not prose
    line, block = macro([*one, dataclasses.replace(one[0], qid="y/0", subject="y")], noun)
    assert line.name.startswith(f"macro average over 2 {noun} (") and block["unit"] == noun


def test_macro_differs_from_micro_when_units_differ_in_size():
    est, _, _ = stats.macro_average({"big": [1.0] * 9 + [0.0], "small": [0.0]})
    assert est.acc == pytest.approx(0.45)  # micro would be 9 / 11


@pytest.mark.parametrize("name,expected", [
    ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/llama-3.1-8b-instruct"),
    ("/models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "meta-llama-3.1-8b-instruct"),
    ("Llama-3.1-8B-Instruct.Q8_0.gguf", "llama-3.1-8b-instruct"),
    ("./Llama-3.1-8B-Instruct-bf16/", "llama-3.1-8b-instruct"),
    ("llama3.1:8b-instruct-q4_K_M", "llama3.1:8b-instruct"), ("llama3.1:8b", "llama3.1:8b")])
def test_model_names_are_matched_without_paths_and_quantization(name, expected):
    assert published.canonical(name) == expected


def test_every_figure_has_a_command_that_runs_its_recipe():
    figures = published.figures()
    assert len(figures) >= 30 and all(f.source.startswith("https://") for f in figures)
    for f in figures:
        argv = shlex.split(f.command())[1:]
        args = cli.build_parser().parse_args(argv)
        settings = {k: v for k, v in vars(args).items() if k not in ("command", "verbose",
                                                                       "model")}
        config = RunConfig.from_spec(args.model, **settings)
        assert (config.task, config.format, config.num_fewshot, config.apply_chat_template,
                config.languages or "") == (f.task, f.format, f.shots, f.chat, f.languages)
    eight = [f for f in figures if f.model == "Llama 3.1 8B Instruct"]
    assert {(f.benchmark, f.metric, f.shown) for f in eight} >= {
        ("MMLU", "macro_avg/acc", "69.4"), ("MMLU", "micro_avg/acc", "69.44"),
        ("MMLU (CoT)", "macro_avg/acc", "73.0"), ("MMLU-Pro (CoT)", "macro_avg/acc", "48.3"),
        ("MMLU German", "macro_avg/acc", "60.59")}
    assert any(f.metric == "normalized/acc" and f.task == "mmlu_pro" for f in figures)


def test_the_published_command_lists_figures_with_commands(capsys):
    assert cli.main(["published", "--model", "Meta-Llama-3.1-70B-Instruct-Q4_K_M.gguf"]) == 0
    out = capsys.readouterr().out
    assert "Llama 3.1 70B Instruct | MMLU | 5-shot | macro_avg/acc | 83.6" in out
    assert "mmlu-bench run --model hf:meta-llama/Llama-3.1-70B-Instruct --format llama " \
           "--apply-chat-template --num-fewshot 5" in out and "8B" not in out
    assert cli.main(["published", "--model", "nobody/nothing"]) == 0
    assert "No published figure" in capsys.readouterr().out


@pytest.fixture(scope="module")
def mmlu_folder(tmp_path_factory):
    """Every MMLU subject, two made-up test questions and five dev rows each: a complete run."""
    root = tmp_path_factory.mktemp("mmlu")
    for split, n in (("dev", 5), ("test", 2)):
        (root / split).mkdir()
        for s in SUBJECTS:
            with open(root / split / f"{s}_{split}.csv", "w", newline="") as f:
                csv.writer(f).writerows([f"{s} {split} question {i}?", "w", "x", "y", "z",
                                         "ABCD"[i % 4]] for i in range(n))
    return root


def run(out, folder, model: str, *extra: str) -> tuple[dict, str]:
    argv = ["run", "--model", f"fake:{model}", "--format", "llama", "--apply-chat-template",
            "--num-fewshot", "5", "--data-dir", str(folder), "--output", str(out),
            "--no-progress", *extra]
    assert cli.main(argv) == 0
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_a_gguf_of_the_model_is_held_against_its_card(mmlu_folder, tmp_path):
    results, table = run(tmp_path / "a", mmlu_folder, "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf")
    macro = results["macro_average"]
    assert macro["units"] == 57 and macro["unit"] == "subjects" and macro["n"] == 114
    assert "macro average over 57 subjects (each weighs the same)" in table
    found = {p["metric"]: p for p in results["published"]}
    assert set(found) == {"macro_avg/acc", "micro_avg/acc"}
    assert found["macro_avg/acc"]["figure"] == 69.4
    assert found["macro_avg/acc"]["ours"] == pytest.approx(100 * macro["acc"])
    micro = results["results"]["mmlu_llama"]["exact_match,strict_match"]
    assert found["micro_avg/acc"]["ours"] == pytest.approx(100 * micro)
    p = found["macro_avg/acc"]
    assert p["difference"] == pytest.approx(p["ours"] - 69.4)
    assert p["inside_interval"] == (p["ci95"][0] <= 69.4 <= p["ci95"][1])
    assert "Published: Llama 3.1 8B Instruct, MMLU 5-shot macro_avg/acc 69.4 (" in table
    assert " points, outside the interval." in table  # a fake model is far from 69.4
    html = (tmp_path / "a" / "report.html").read_text()
    assert 'id="published"' in html and "69.4" in html


def test_other_models_partial_runs_and_other_recipes_are_not_compared(mmlu_folder, tmp_path):
    assert "published" not in run(tmp_path / "b", mmlu_folder, "SmolLM2-135M.gguf")[0]
    partial = run(tmp_path / "c", mmlu_folder, "llama3.1:8b", "--limit", "1")[0]
    assert "published" not in partial and "macro_average" in partial
    named = run(tmp_path / "d", mmlu_folder, "my-finetune.gguf", "--published-model",
                "meta-llama/Llama-3.1-8B-Instruct", "--subjects", "anatomy")[0]
    assert "published" not in named  # one subject is not the card's MMLU
    named = run(tmp_path / "e", mmlu_folder, "my-finetune.gguf", "--published-model",
                "meta-llama/Llama-3.1-8B-Instruct")[0]
    assert {p["model"] for p in named["published"]} == {"Llama 3.1 8B Instruct"}
