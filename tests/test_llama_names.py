"""Meta's recipes print and write lm-eval 0.4.13's names: its groups mmlu_llama, mmlu_cot_llama,
mmlu_pro_llama and mmlu_de_llama as lm-eval itself aggregated, named and printed them
(tests/fixtures/lmeval_llama_results.json: bench/lmeval_llama_names.py ran lm-eval's own
simple_evaluate on made-up rows with a scripted model). The same verdicts, as mmlu-bench records,
give the same results-file names, aliases, versions (text or number, as lm-eval holds each),
n-shot, values, and the same two tables, character for character."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlu_bench import report, summary
from mmlu_bench.schema import QuestionRecord

from .conftest import run_header

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "lmeval_llama_results.json")
                     .read_text(encoding="utf-8"))["groups"]
# lm-eval group -> (--task, its options, --format, the recipe in the prompt identity, unit prefix)
RUNS = {"mmlu_llama": ("mmlu", {}, "llama", "mmlu_llama", ""),
        "mmlu_cot_llama": ("mmlu", {}, "llama-cot", "mmlu_cot_llama", ""),
        "mmlu_pro_llama": ("mmlu_pro", {"recipe": "llama"}, "llama", "mmlu_pro_llama", ""),
        "mmlu_de_llama": ("mmlu_llama_multilingual", {"languages": "de"}, "llama", "mmlu_llama",
                          "de.")}


def build(group: str):
    """lm-eval's verdicts as records, the header of a run of the same recipe, its Summary."""
    task, options, fmt, recipe, prefix = RUNS[group]
    fix = FIXTURE[group]
    records = []
    for lmeval_task, verdicts in fix["verdicts"].items():
        unit = prefix + lmeval_task.removeprefix(group + "_")
        for doc_id, right in verdicts:
            records.append(QuestionRecord(
                f"{unit}/{doc_id}", unit, doc_id, 0, (), 0 if right else 1, bool(right), "", 0,
                response="...", answer="A" if right else "B", n_options=4))
    header = run_header(num_fewshot=fix["num_fewshot"], prompt_format=f"p/{fmt}[{recipe}]:greedy",
                        task=task, task_options=options,
                        backend_info={"settings": {"format": fmt}})
    return header, summary.build(header, records)


def typed(d: dict) -> dict:
    """Values with their JSON type: lm-eval writes a group's version "1" and a task's 1.0."""
    return {k: (type(v).__name__, v) for k, v in d.items()}


@pytest.mark.parametrize("group", sorted(FIXTURE))
def test_tables_are_lm_evals(group):
    _, s = build(group)
    fix = FIXTURE[group]
    assert report.full_table(s).startswith(fix["table"] + "\n" + fix["groups_table"])


@pytest.mark.parametrize("group", sorted(FIXTURE))
def test_results_file_names_versions_and_values_are_lm_evals(group):
    header, s = build(group)
    fix, out = FIXTURE[group], report.results_json(*build(group)[::-1])
    assert list(out["results"]) == list(fix["results"]) or \
        set(out["results"]) == set(fix["results"])
    for key, theirs in fix["results"].items():
        ours = out["results"][key]
        # lm-eval 0.4.13 indents the alias in its table only; mmlu-bench writes the printed form
        assert ours["alias"].lstrip(" ").removeprefix("- ") == theirs["alias"], key
        assert ours["sample_len"] == theirs["sample_len"], key
        assert ours["exact_match,strict_match"] == pytest.approx(
            theirs["exact_match,strict_match"]), key
        stderr = theirs["exact_match_stderr,strict_match"]
        assert ours["exact_match_stderr,strict_match"] == (
            stderr if stderr == "N/A" else pytest.approx(stderr)), key
    # the same members (lm-eval lists a group's in its YAML's order, mmlu-bench in the table's)
    assert {k: sorted(v) for k, v in out["group_subtasks"].items()} == \
        {k: sorted(v) for k, v in fix["group_subtasks"].items()}
    assert set(out["groups"]) == set(fix["groups"])
    assert typed(out["versions"]) == typed(fix["versions"])
    assert out["higher_is_better"] == fix["higher_is_better"]
    assert out["n-shot"] == fix["n-shot"]
    assert s.metric == "exact_match" and s.filters == ("strict_match",)
