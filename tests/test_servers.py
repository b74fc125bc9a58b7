"""openai: and ollama: against real servers on 127.0.0.1 over the real SmolLM2 GGUF.

llama-cpp-python's OpenAI-compatible server (subprocess), an Ollama-API server computing with
llama_cpp.Llama (tests/servers.py), and a fault-injecting proxy in front of either.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
from pathlib import Path
from unittest import mock

import pytest

from mmlu_bench import cli
from mmlu_bench.backends import http
from mmlu_bench.backends.ollama import ollama_host, parse_version
from mmlu_bench.backends.server_api import openai_letters
from mmlu_bench.records import read
from mmlu_bench.scoring import predict

from .conftest import REFERENCE_0SHOT
from .servers import FAULTS, FaultProxy, LlamaCppServer, OllamaServer, Scorer, free_port

# Short prompts, two categories: 20 questions per run keep the file to minutes on 2 cores.
# (The full 57-subject comparison with lm-eval is too slow for every test run.)
SUBJECTS = ("abstract_algebra", "world_religions")
FAULT_SUBJECTS, FAULT_LIMIT = "abstract_algebra", "4"
TIMEOUT = 10  # seconds: well above one prompt's time on a busy 2-core machine
SECRET = "sk-mmlu-test-SECRET-7d1f"
MODEL_ID = LlamaCppServer.MODEL_ID

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def short_retries():
    with pytest.MonkeyPatch.context() as mp:
        # 7 faults in a row can hit one request: 10 tries leave room.
        mp.setattr(http, "RETRY", http.Retry(attempts=10, backoff=0.05, cap=2.0))
        mp.setattr(http, "STARTUP_RETRY", http.Retry(attempts=2, backoff=0.05, cap=1.0,
                                                     log_level=logging.INFO))
        yield


@pytest.fixture(scope="module")
def llama_server(llama_cpp, mmlu_dir, gguf_path, tmp_path_factory):
    server = LlamaCppServer(gguf_path, tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def make_scorer(llama_cpp, mmlu_dir, gguf_path):
    """The model loads at the first generation: most start-up refusals never need it."""
    return functools.cache(lambda: Scorer(gguf_path))


@pytest.fixture(scope="module")
def ollama(make_scorer):
    with OllamaServer(make_scorer) as server:
        yield server


def run_cli(model: str, out: Path, *extra: str, subjects: str = ",".join(SUBJECTS),
            limit: str = "10", env: dict | None = None) -> tuple[int, str, str]:
    argv = ["run", "--model", model, "--subjects", subjects,  # the bundled MMLU
            "--limit", limit, "--output", str(out), "--no-progress", *extra]
    stdout, stderr = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(stdout), \
            contextlib.redirect_stderr(stderr):
        code = cli.main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def records(out: Path) -> dict:
    return {r.qid: r for r in read(out / "records.jsonl")[1]}


def reference() -> dict:
    lines = REFERENCE_0SHOT.read_text().splitlines()
    return {f"{d['subject']}/{d['doc_id']}": d for d in map(json.loads, lines)}


def agreement(ours: dict, theirs: dict) -> tuple[float, float]:
    """(share of equal predictions, largest log-likelihood gap where both have the letter)."""
    same = sum(ours[q].pred == theirs[q]["pred"] for q in ours) / len(ours)
    gaps = [abs(a - b) for q in ours for a, b in zip(ours[q].loglikelihoods,
                                                     theirs[q]["loglikelihoods"], strict=True)
            if a is not None]
    return same, max(gaps)


def as_ref(recs: dict) -> dict:
    return {q: {"pred": r.pred, "loglikelihoods": r.loglikelihoods} for q, r in recs.items()}


def assert_secret_nowhere(out: Path, *texts: str) -> None:
    assert all(SECRET not in t for t in texts)
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


@pytest.fixture(scope="module")
def openai_run(llama_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("openai")
    code, stdout, stderr = run_cli(f"openai:{llama_server.base}", out, "--model-name", MODEL_ID,
                                   "--api-key", SECRET, "--concurrency", "4")
    assert code == 0, stderr
    return out, stdout, stderr


@pytest.fixture(scope="module")
def ollama_run(ollama, tmp_path_factory):
    out = tmp_path_factory.mktemp("ollama")
    code, stdout, stderr = run_cli("ollama:smollm2", out, env={"OLLAMA_HOST": ollama.url})
    assert code == 0, stderr
    return out, stdout, stderr


def test_openai_on_llamacpp_server_matches_lm_eval(openai_run):
    out, stdout, stderr = openai_run
    recs = records(out)
    assert len(recs) == 10 * len(SUBJECTS) and "|mmlu " in stdout
    assert all(len(r.loglikelihoods) == 4 and r.pred == predict(r.loglikelihoods)
               for r in recs.values())
    same, gap = agreement(recs, reference())
    missing = sum(ll is None for r in recs.values() for ll in r.loglikelihoods)
    print(f"\nopenai/llama.cpp vs lm-eval: {same:.1%} same predictions over {len(recs)}, "
          f"largest log-likelihood gap {gap:.3f}, {missing} letters outside the top 20")
    assert same >= 0.9
    assert_secret_nowhere(out, stdout, stderr)


def test_ollama_api_matches_openai_and_lm_eval(ollama_run, openai_run):
    recs, theirs = records(ollama_run[0]), records(openai_run[0])
    assert recs.keys() == theirs.keys()
    same_ref, gap_ref = agreement(recs, reference())
    same, gap = agreement(recs, as_ref(theirs))
    print(f"\nollama vs lm-eval: {same_ref:.1%} same predictions (gap {gap_ref:.3f}); "
          f"ollama vs openai/llama.cpp: {same:.1%} (gap {gap:.4f})")
    assert same_ref >= 0.9 and same >= 0.98


def _proxy_for(backend: str, llama_server, ollama, **kw) -> tuple[FaultProxy, str, dict, list]:
    if backend == "openai":
        proxy = FaultProxy(llama_server.base.removesuffix("/v1"), **kw)
        return proxy, f"openai:{proxy.url}/v1", {}, ["--model-name", MODEL_ID]
    proxy = FaultProxy(ollama.url, **kw)
    return proxy, "ollama:smollm2", {"OLLAMA_HOST": proxy.url}, []


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_faults_are_retried_to_the_same_records(backend, llama_server, ollama, openai_run,
                                                ollama_run, tmp_path):
    # One request at a time: a request the client gave up on keeps a llama.cpp server busy.
    proxy, model, env, extra = _proxy_for(backend, llama_server, ollama, every=1,
                                          hang=TIMEOUT + 0.5)
    with proxy:
        code, _, stderr = run_cli(model, tmp_path, *extra, "--api-key", SECRET, "--timeout",
                                  str(TIMEOUT), "--concurrency", "1", subjects=FAULT_SUBJECTS,
                                  limit=FAULT_LIMIT, env=env)
    assert code == 0, stderr
    assert sorted(set(proxy.injected)) == sorted(FAULTS)
    clean = records((openai_run if backend == "openai" else ollama_run)[0])
    recs = records(tmp_path)
    assert all(recs[q].pred == clean[q].pred for q in recs) and len(recs) == int(FAULT_LIMIT)
    assert agreement(recs, as_ref(clean))[1] < 1e-3
    # 429 came with Retry-After: 1; the same request came back no sooner.
    at, body, _ = next(e for e in proxy.log if e[2] == "429")
    assert next(t for t, b, _ in proxy.log if b == body and t > at) - at >= 0.95
    assert proxy.auth == ({f"Bearer {SECRET}"} if backend == "openai" else set())
    assert_secret_nowhere(tmp_path, stderr)


def test_a_letter_outside_the_top_k_is_missing_not_shifted(llama_server, ollama, ollama_run,
                                                            tmp_path):
    proxy, model, env, extra = _proxy_for("ollama", llama_server, ollama, always="drop B")
    with proxy:
        code, _, stderr = run_cli(model, tmp_path, *extra, subjects=FAULT_SUBJECTS,
                                  limit=FAULT_LIMIT, env=env)
    assert code == 0, stderr
    clean, recs = records(ollama_run[0]), records(tmp_path)
    for q, r in recs.items():
        kept = tuple(None if i == 1 else ll for i, ll in enumerate(clean[q].loglikelihoods))
        assert r.loglikelihoods[1] is None and r.pred == predict(kept), q
        assert all(abs(a - b) < 1e-3 for a, b in zip(r.loglikelihoods, kept) if a is not None)


def test_a_server_that_dies_mid_run_keeps_what_was_scored(ollama, ollama_run, tmp_path,
                                                          monkeypatch):
    monkeypatch.setattr(http, "RETRY", http.Retry(attempts=3, backoff=0.05))
    with FaultProxy(ollama.url, always="500", skip=3) as proxy:  # the probe, then 2 questions
        code, _, stderr = run_cli("ollama:smollm2", tmp_path, "--concurrency", "1",
                                  subjects=FAULT_SUBJECTS, limit=FAULT_LIMIT,
                                  env={"OLLAMA_HOST": proxy.url})
    assert code != 0 and stderr.count("\n") == 1, stderr
    assert "HTTP 500: injected 500 (gave up after 3 tries)" in stderr
    kept, clean = records(tmp_path), records(ollama_run[0])
    assert len(kept) == 2 and all(kept[q].loglikelihoods == clean[q].loglikelihoods for q in kept)


def _error_case(case: str, llama_server, make_scorer, stack: contextlib.ExitStack):
    """(model, extra flags, environment) for each start-up refusal."""
    key = ["--api-key", SECRET]
    if case == "refused":
        return f"openai:http://127.0.0.1:{free_port()}/v1", ["--model-name", "m", *key], {}
    if case == "wrong url":
        root = llama_server.base.removesuffix("/v1")
        return f"openai:{root}", ["--model-name", MODEL_ID, *key], {}
    if case == "unknown model":
        return f"openai:{llama_server.base}", ["--model-name", "no-such-model", *key], {}
    if case == "openai no logprobs":
        proxy = stack.enter_context(FaultProxy(llama_server.base.removesuffix("/v1"),
                                               always="nologprobs", skip=0))
        return f"openai:{proxy.url}/v1", ["--model-name", MODEL_ID, *key], {}
    if case == "ollama refused":
        return "ollama:smollm2", key, {"OLLAMA_HOST": f"127.0.0.1:{free_port()}"}
    settings = {"old ollama": {"version": "0.12.10"}, "not pulled": {"models": ("qwen3:latest",)},
                "ollama no logprobs": {"logprobs": False}}[case]
    server = stack.enter_context(OllamaServer(make_scorer, **settings))
    return "ollama:smollm2", key, {"OLLAMA_HOST": server.url}


@pytest.mark.parametrize("case, says", [
    ("refused", "connection refused; is the server running?"),
    ("wrong url", "does not exist (HTTP 404)"),
    ("unknown model", "does not serve model 'no-such-model'"),
    ("openai no logprobs", "returned no logprobs"),
    # Without a server that gives logprobs, ollama: reads Ollama's store, here a missing one.
    ("ollama refused", "connection refused; is the server running? (gave up after 2 tries); "
                       "and not from Ollama's store either: no Ollama model store at"),
    ("old ollama", "upgrade Ollama to 0.12.11 or later; and not from Ollama's store either"),
    ("not pulled", "run `ollama pull smollm2`"),
    ("ollama no logprobs", "returned no logprobs"),
])
def test_startup_refusals_are_one_clear_line(case, says, llama_server, make_scorer, tmp_path):
    with contextlib.ExitStack() as stack:
        model, extra, env = _error_case(case, llama_server, make_scorer, stack)
        env["OLLAMA_MODELS"] = str(tmp_path / "no-store")
        code, stdout, stderr = run_cli(model, tmp_path, *extra, subjects="anatomy", env=env)
    assert code != 0 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("mmlu-bench: error: "), stderr
    assert says in stderr, stderr
    assert_secret_nowhere(tmp_path, stderr)


@pytest.mark.parametrize("value, url", [
    (None, "http://127.0.0.1:11434"), ("0.0.0.0", "http://0.0.0.0:11434"),
    ("example.org:8080", "http://example.org:8080"),
    ("https://example.org", "https://example.org:443"),
    ("::1", "http://[::1]:11434"),
])
def test_ollama_host_is_read_as_the_ollama_cli_reads_it(value, url):
    assert ollama_host(value) == url


def test_versions_and_the_chat_style_logprobs_shape():
    assert parse_version("0.12.11") == (0, 12, 11) > parse_version("0.12.9-rc1")
    first = {"token": " C", "logprob": -0.5, "top_logprobs": [{"token": " A", "logprob": -2.0}]}
    answer = {"choices": [{"logprobs": {"content": [first]}}]}
    assert openai_letters(answer) == ({" A": -2.0, " C": -0.5}, 0)
