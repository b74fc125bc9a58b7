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

from .conftest import REFERENCE_0SHOT, VLLM_ENV
from .servers import FaultProxy, VLLMServer

pytestmark = pytest.mark.slow

ALL = "stem,humanities,social_sciences,other"  # the 57 subjects
CHAT = "anatomy,marketing,virology"
MODEL_ID = VLLMServer.MODEL_ID


@pytest.fixture(scope="module")
def server(vllm_installed, smollm2_folder, tmp_path_factory):
    # --enforce-eager: no torch.compile at start-up (~10 s instead of ~2 min; test_vllm.py)
    s = VLLMServer(smollm2_folder, tmp_path_factory.mktemp("vllm-server") / "server.log",
                   VLLM_ENV, ("--enforce-eager",))
    yield s
    import psutil

    procs = [psutil.Process(p) for p in s.pids()]
    s.stop()
    _, left = psutil.wait_procs(procs, timeout=20)  # killed ones may take a moment to go
    assert not left, f"vLLM server processes left running: {[p.pid for p in left]}"


def run(out: Path, model: str, subjects: str, limit: str, *extra: str) -> Path:
    argv = ["run", "--model", model, "--subjects", subjects, "--limit", limit,  # bundled MMLU
            "--output", str(out), "--no-progress", *extra]
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


@pytest.fixture(scope="module")
def plain_run(server, tmp_path_factory):
    return served(server, tmp_path_factory.mktemp("plain"), ALL, "10")


def test_plain_letters_match_lm_eval(server, plain_run):
    """All 570 0-shot questions: /v1/completions' top-20 log-probabilities are the model's own
    (vLLM returns raw log-probabilities), and the letters outside them come from the echoed
    prompt (server_echo.py): every letter within 1e-4 of lm-eval's."""
    header, recs, _ = plain_run
    reference = {f"{r['subject']}/{r['doc_id']}": r
                 for r in map(json.loads, REFERENCE_0SHOT.open())}
    assert len(recs) == 570
    for r in recs:
        ref = reference[r.qid]
        assert (r.prompt_sha256, r.pred) == (ref["prompt_sha256"], ref["pred"]), r.qid
        assert None not in r.loglikelihoods, r.qid
        assert max(abs(a - b) for a, b in zip(r.loglikelihoods, ref["loglikelihoods"],
                                               strict=True)) <= 1e-4, r.qid
    assert header.backend_info["server_model"] == MODEL_ID


def test_an_echo_that_disagrees_with_the_top_20_is_not_used(server, plain_run, tmp_path,
                                                           caplog):
    """A server whose echoed log-probabilities differ from its top 20 (the proxy moves them
    0.5 nats): the letters outside the top 20 stay missing, with one warning."""
    _, clean, _ = plain_run
    subject = "abstract_algebra"
    with FaultProxy(server.base.removesuffix("/v1"), always="skew echo", skip=0) as proxy:
        _, recs, _ = served(proxy_server(proxy), tmp_path / "skewed", subject, "10")
    clean = {r.qid: r for r in clean}
    missing = 0
    for r in recs:
        for a, b in zip(r.loglikelihoods, clean[r.qid].loglikelihoods, strict=True):
            assert a is None or abs(a - b) <= 1e-4, r.qid
            missing += a is None
    assert missing, "abstract_algebra's first 10 have letters outside SmolLM2's top 20"
    assert "stay missing" in caplog.text


def proxy_server(proxy):
    return type("Proxied", (), {"base": proxy.url + "/v1"})()


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
