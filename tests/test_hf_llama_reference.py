"""Meta's mmlu_llama recipe on the demo model (SmolLM2 through transformers): every generated
text and exact_match equal lm-eval 0.4.13's own run of its `mmlu_llama_<subject>` tasks
(`--apply_chat_template --fewshot_as_multiturn`, 5-shot, --limit 2, batch size 8, fp32 on CPU;
tests/fixtures/lmeval-0.4.13_smollm2-135m-instruct-q4_1_mmlu_llama_5shot_chat_limit2.jsonl,
written from bench/gen_vs_lmeval.py's lm-eval side)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlu_bench import cli, records

REFERENCE = (Path(__file__).parent / "fixtures" /
             "lmeval-0.4.13_smollm2-135m-instruct-q4_1_mmlu_llama_5shot_chat_limit2.jsonl")
SUBJECTS = "abstract_algebra,anatomy,college_physics,marketing,virology,world_religions"


@pytest.mark.slow
def test_mmlu_llama_texts_and_exact_match_equal_lm_evals(gguf_path, mmlu_dir, tmp_path):
    assert cli.main(["run", "--model", f"hf:{gguf_path}", "--format", "llama",
                     "--apply-chat-template", "--num-fewshot", "5", "--data-dir", str(mmlu_dir),
                     "--subjects", SUBJECTS, "--limit", "2", "--batch-size", "8", "--device",
                     "cpu", "--output", str(tmp_path), "--no-progress"]) == 0
    _, recs, _ = records.read(tmp_path / records.RECORDS)
    reference = {f"{r['subject']}/{r['doc_id']}": r for r in map(json.loads, REFERENCE.open())}
    assert len(recs) == len(reference) == 12
    for r in recs:
        ref = reference[r.qid]
        assert r.prompt_sha256 == ref["prompt_sha256"], r.qid  # all turns and the prefill
        assert r.response == ref["response"], r.qid
        assert (r.answer or "") == ref["filtered"].strip().rstrip("."), r.qid
        assert r.correct == bool(ref["exact_match"]), r.qid
        assert ref["target"] == f"{'ABCD'[r.gold]}."
