"""End to end on the demo model (SmolLM2 through transformers): lm-eval 0.4.13's own numbers.

The reference file (tests/fixtures) holds lm-eval's per-question output for exactly this setting
(0-shot, --limit 10, fp32 on CPU, the Q4_1 GGUF dequantized by transformers).
"""

from __future__ import annotations

import json

from mmlu_bench import bundled, cli, records

from .conftest import REFERENCE_0SHOT


def test_the_first_command_prints_the_table_and_its_data_source(zero_shot_run):
    lines = (zero_shot_run / "printed.txt").read_text().splitlines()
    printed = "\n".join(lines)
    groups = next(i for i, line in enumerate(lines) if line.startswith("|      Groups      |"))
    row = "|mmlu              |      2|none  |      |acc   |   |0.2596|±  |0.0185|"
    assert lines[groups + 2] == row  # the Groups table's first row, as in the README
    assert f"Data: {bundled.source()}" in printed and bundled.SHA256 in printed
    header = records.read(zero_shot_run / records.RECORDS)[0]
    assert header.backend_info["data_source"] == bundled.source()
    results = json.loads((zero_shot_run / "results.json").read_text())
    assert results["config"]["data_source"] == bundled.source()


def test_matches_lm_eval_question_by_question(zero_shot_run, gguf_path):
    header, recs, footer = records.read(zero_shot_run / records.RECORDS)
    reference = {f"{r['subject']}/{r['doc_id']}": r
                 for r in map(json.loads, REFERENCE_0SHOT.open())}
    assert len(recs) == len(reference) == 570
    worst = 0.0
    for r in recs:
        ref = reference[r.qid]
        assert r.prompt_sha256 == ref["prompt_sha256"], r.qid
        assert r.pred == ref["pred"], r.qid
        assert r.gold == ref["gold"]
        worst = max(worst, *(abs(a - b) for a, b in zip(r.loglikelihoods, ref["loglikelihoods"],
                                                         strict=True)))
    assert worst < 1e-4, f"max |loglikelihood difference| {worst:.2e}"
    assert (header.model, header.backend) == ("demo", "hf")
    assert header.backend_info["model_file"] == gguf_path.name
    assert header.backend_info["dtype"] == "float32"
    assert header.backend_info["device"] == "cpu"
    assert footer.questions == 570


def test_prints_lm_evals_table(zero_shot_run, capsys):
    assert cli.main(["report", str(zero_shot_run)]) == 0
    out = capsys.readouterr().out
    assert "|mmlu" in out and "|0.2596|±  |0.0185|" in out
    results = json.loads((zero_shot_run / "results.json").read_text())
    assert round(results["results"]["mmlu"]["acc,none"], 4) == 0.2596
    assert round(results["results"]["mmlu"]["acc_stderr,none"], 4) == 0.0185
    assert "|mmlu " in (zero_shot_run / "results.md").read_text()
