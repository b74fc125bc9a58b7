"""openai: against vLLM's own OpenAI-compatible server (the CPU build), started here on
127.0.0.1 over the real SmolLM2 (fp32 transformers folder): letters from /v1/completions, the
chat template through /v1/chat/completions, and generated text.

One server for the module, started without torch.compile (as test_vllm.py's engine). The numbers
are checked against lm-eval's reference (plain) and hf: on the same questions (chat, text).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from mmlu_bench import cli, records

from .conftest import MMLU_DIR, REFERENCE_0SHOT, VLLM_ENV
from .servers import VLLMServer

pytestmark = pytest.mark.slow

# Ten subjects (100 questions) keep the module to minutes on 2 cores; bench/bench_vllm.py
# --server runs all 570.
PLAIN = ("abstract_algebra,anatomy,astronomy,college_physics,econometrics,high_school_geography,"
         "marketing,moral_disputes,virology,world_religions")
CHAT = "anatomy,marketing,virology"
MODEL_ID = VLLMServer.MODEL_ID


@pytest.fixture(scope="module")
def server(vllm_installed, smollm2_folder, mmlu_dir, tmp_path_factory):
    # --enforce-eager: no torch.compile at start-up (~10 s instead of ~2 min; test_vllm.py)
    s = VLLMServer(smollm2_folder, tmp_path_factory.mktemp("vllm-server") / "server.log",
                   VLLM_ENV, ("--enforce-eager",))
    yield s
    pids = s.pids()
    s.stop()
    left = [p for p in pids if _alive(p)]
    assert not left, f"vLLM server processes left running: {left}"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run(out: Path, model: str, subjects: str, limit: str, *extra: str) -> Path:
    argv = ["run", "--model", model, "--data-dir", str(MMLU_DIR), "--subjects", subjects,
            "--limit", limit, "--output", str(out), "--no-progress", *extra]
    stderr = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
        code = cli.main(argv)
    assert code == 0, stderr.getvalue()[-2000:]
    return out


def served(server, out: Path, subjects: str, limit: str, *extra: str):
    out = run(out, f"openai:{server.base}", subjects, limit, "--model-name", MODEL_ID,
              "--concurrency", "4", *extra)
    return records.read(out / records.RECORDS)


def test_every_listener_of_the_server_is_on_the_loopback_address(server):
    import psutil

    pids = set(server.pids())
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.pid in pids and c.status == psutil.CONN_LISTEN]
    assert listening, "the server listens nowhere?"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}, listening


def test_plain_letters_match_lm_eval(server, tmp_path):
    """/v1/completions' top-20 log-probabilities are the model's own (vLLM returns raw
    log-probabilities): every letter is found, within 1e-4 of lm-eval's."""
    header, recs, _ = served(server, tmp_path / "plain", PLAIN, "10")
    reference = {f"{r['subject']}/{r['doc_id']}": r
                 for r in map(json.loads, REFERENCE_0SHOT.open())}
    assert len(recs) == 100
    for r in recs:
        ref = reference[r.qid]
        assert (r.prompt_sha256, r.pred) == (ref["prompt_sha256"], ref["pred"]), r.qid
        assert None not in r.loglikelihoods, r.qid
        assert max(abs(a - b) for a, b in zip(r.loglikelihoods, ref["loglikelihoods"],
                                               strict=True)) <= 1e-4, r.qid
    assert header["backend_info"]["server_model"] == MODEL_ID


def test_chat_template_through_the_chat_endpoint_matches_hf(server, gguf_path, tmp_path):
    """The server renders SmolLM2's template itself and the letter is the first token of the
    answer; hf: scores "\\nA" after the rendered prompt. The newline's log-probability is the
    same for the four letters, so each question's four differences are one constant and the
    predictions are hf:'s."""
    _, ours, _ = served(server, tmp_path / "chat", CHAT, "10", "--apply-chat-template")
    hf = run(tmp_path / "hf", f"hf:{gguf_path}", CHAT, "10", "--apply-chat-template")
    theirs = {r.qid: r for r in records.read(hf / records.RECORDS)[1]}
    assert len(ours) == 30
    for r in ours:
        ref = theirs[r.qid]
        assert r.pred == ref.pred, r.qid
        gaps = [b - a for a, b in zip(r.loglikelihoods, ref.loglikelihoods, strict=True)]
        assert max(gaps) - min(gaps) <= 2e-4, (r.qid, gaps)


def test_generated_text_matches_hf(server, gguf_path, tmp_path):
    gen = ("--format", "generative")
    _, ours, _ = served(server, tmp_path / "gen", CHAT, "2", *gen)
    hf = run(tmp_path / "hf", f"hf:{gguf_path}", CHAT, "2", *gen)
    theirs = {r.qid: r.response for r in records.read(hf / records.RECORDS)[1]}
    assert len(ours) == 6
    assert [r.response for r in ours] == [theirs[r.qid] for r in ours]
