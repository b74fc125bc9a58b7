"""Generation through servers: openai: (/completions, /chat/completions) on llama-cpp-python's
real server, ollama: (/api/generate raw, /api/chat) on an Ollama without logprobs, faults
retried to the same text, empty answers asked again then recorded."""

from __future__ import annotations

import functools
import json
import logging
import threading

import pytest

from mmlu_bench import backends
from mmlu_bench.backends import http, server_generate
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import BackendError
from mmlu_bench.schema import GenerateRequest

from .servers import FaultProxy, LlamaCppServer, _Handler, _Threaded

MODEL_ID = LlamaCppServer.MODEL_ID
PROMPT = ("The following are multiple choice questions (with answers) about astronomy.\n\n"
          "Which planet is known as the Red Planet?\nA. Venus\nB. Mars\nC. Jupiter\n"
          "D. Saturn\nAnswer:")
CHAT = ({"role": "user", "content": "Which planet is known as the Red Planet? Answer in one "
                                    "word."},)
REQUESTS = [GenerateRequest("astronomy/0", PROMPT, ("</s>", "\n"), 8),
            GenerateRequest("astronomy/1", PROMPT + " B\n\nWhy?", ("Q:",), 8),
            GenerateRequest("astronomy/2", CHAT[0]["content"], (), 8, CHAT)]


@pytest.fixture(autouse=True)
def short_retries(monkeypatch):
    monkeypatch.setattr(http, "RETRY", http.Retry(attempts=8, backoff=0.05, cap=2.0))
    monkeypatch.setattr(http, "STARTUP_RETRY", http.Retry(attempts=2, backoff=0.05, cap=1.0,
                                                          log_level=logging.INFO))


def generate(backend, requests=REQUESTS) -> dict:
    out = {g.qid: g for batch in backend.generate_groups([(requests, frozenset())])
           for g in batch}
    backend.close()
    return out


class _Scripted(_Threaded):
    """An OpenAI-style server answering every generation with the same text."""

    def __init__(self, text: str) -> None:
        self.posts = 0
        server = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                self.send(200, {"data": [{"id": "m"}]})

            def do_POST(self) -> None:
                self.body()
                server.posts += 1
                self.send(200, {"choices": [{"text": text, "finish_reason": "stop"}]})

        self.start(Handler)


def test_empty_answers_are_asked_again_then_recorded_as_failed_extraction():
    with _Scripted("") as server:
        b = backends.create(RunConfig.from_spec(f"openai:{server.url}/v1", model_name="m",
                                                format="generative", concurrency=1))
        got = generate(b, REQUESTS[:1])
    assert server.posts == server_generate.EMPTY_TRIES
    assert got["astronomy/0"].text == "" and got["astronomy/0"].finish == "stop"


def test_payloads_follow_lm_evals_api_models():
    path, body = server_generate.openai_request("m", REQUESTS[0])
    assert path == "/completions" and body == {
        "model": "m", "max_tokens": 8, "temperature": 0, "seed": 1234,
        "stop": ["</s>", "\n"], "prompt": PROMPT}
    path, body = server_generate.openai_request("m", REQUESTS[2])
    assert path == "/chat/completions" and body["messages"] == list(CHAT) and "stop" not in body
    path, body = server_generate.ollama_request("m", REQUESTS[0])
    assert path == "/api/generate" and body["raw"] is True and body["options"] == {
        "temperature": 0, "seed": 1234, "num_predict": 8, "stop": ["</s>", "\n"]}
    assert server_generate.ollama_request("m", REQUESTS[2])[0] == "/api/chat"


# ---- the real model (slow)

@pytest.fixture(scope="module")
def llm(llama_cpp, gguf_path):
    from llama_cpp import Llama

    from mmlu_bench.backends.llamacpp import _without_amx

    from .servers import THREADS

    with _without_amx():  # llama.cpp's AMX kernels crash on SmolLM2 (see there)
        return Llama(model_path=str(gguf_path), n_ctx=512, n_threads=THREADS,
                     n_threads_batch=THREADS, verbose=False)


@functools.cache
def _lock() -> threading.Lock:
    return threading.Lock()


def local(llm, r: GenerateRequest) -> str:
    """llama.cpp's own greedy text in this process: what a server should send back."""
    with _lock():
        if r.messages is not None:
            out = llm.create_chat_completion(list(r.messages), max_tokens=r.max_tokens,
                                             temperature=0, seed=1234)
            return out["choices"][0]["message"]["content"]
        out = llm.create_completion(r.context, max_tokens=r.max_tokens, temperature=0,
                                    stop=list(r.until), seed=1234)
        return out["choices"][0]["text"]


@pytest.fixture(scope="module")
def llama_server(llama_cpp, gguf_path, tmp_path_factory):
    server = LlamaCppServer(gguf_path, tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.mark.slow
def test_openai_generation_on_llamacpp_server_with_faults(llama_server, llm):
    config = RunConfig.from_spec(f"openai:{llama_server.base}", model_name=MODEL_ID,
                                 format="simple-evals", concurrency=1)
    clean = generate(backends.create(config))
    for r in REQUESTS:
        assert clean[r.qid].text == local(llm, r), r.qid
        assert clean[r.qid].n_tokens > 0
    faults = ("reset", "429", "500", "503", "truncated")
    with FaultProxy(llama_server.base.removesuffix("/v1"), faults=faults, every=1) as proxy:
        faulty = generate(backends.create(config.with_(model=proxy.url + "/v1")))
    assert sorted(set(proxy.injected)) == sorted(faults)
    assert {q: g.text for q, g in faulty.items()} == {q: g.text for q, g in clean.items()}


class OldOllama(_Threaded):
    """An Ollama older than logprobs (0.5.0): /api/generate and /api/chat, text only, by
    llama.cpp over the real model."""

    def __init__(self, llm) -> None:
        self.paths: list[str] = []
        server = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                if self.path == "/api/version":
                    return self.send(200, {"version": "0.5.0"})
                self.send(200, {"models": [{"name": "smollm2:latest", "digest": "d"}]})

            def do_POST(self) -> None:
                request = json.loads(self.body())
                server.paths.append(self.path)
                o = request["options"]
                r = GenerateRequest("q", request.get("prompt", ""), tuple(o.get("stop", ())),
                                    o["num_predict"], request.get("messages"))
                text = local(llm, r)
                key = "message" if self.path == "/api/chat" else "response"
                self.send(200, {key: {"role": "assistant", "content": text}
                                if key == "message" else text, "done": True,
                                "done_reason": "stop", "prompt_eval_count": 20,
                                "eval_count": 3})

        self.start(Handler)


@pytest.mark.slow
def test_ollama_without_logprobs_generates(llm, monkeypatch):
    with OldOllama(llm) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        with pytest.raises(BackendError, match="cannot return logprobs"):
            backends.create(RunConfig.from_spec("ollama:smollm2"))
        b = backends.create(RunConfig.from_spec("ollama:smollm2", format="simple-evals",
                                                concurrency=1))
        got = generate(b)
    # Raw prompts go to /api/generate, the chat one to /api/chat; an empty answer (greedy
    # SmolLM2 stops at once on a "\n" stop string) is asked again before it is recorded.
    assert set(server.paths[:-1]) == {"/api/generate"} and server.paths[-1] == "/api/chat"
    for r in REQUESTS:
        assert got[r.qid].text == local(llm, r) and got[r.qid].n_tokens == 23


@pytest.mark.slow
def test_gguf_generation_run_records_llamacpp_text(llm, gguf_path, mmlu_dir, tmp_path):
    """gguf: through the CLI: lm-eval's mmlu_generative prompt, llama.cpp's greedy text cut at
    "\\n", the letter extracted into the record."""
    from mmlu_bench.cli import main
    from mmlu_bench.records import read
    from mmlu_bench.runner import plan

    argv = ["run", "--model", f"gguf:{gguf_path}", "--format", "generative", "--data-dir",
            str(mmlu_dir), "--subjects", "anatomy,astronomy", "--limit", "1", "--threads", "1",
            "--output", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    _, recs, _ = read(tmp_path / "records.jsonl")
    config = RunConfig.from_spec(f"gguf:{gguf_path}", format="generative", data_dir=str(mmlu_dir),
                                 subjects="anatomy,astronomy", limit=1, output=str(tmp_path))
    asked = {r.qid: r for unit in plan(config).requests.values() for r in unit}
    assert len(recs) == 2
    for rec in recs:
        assert rec.response == local(llm, asked[rec.qid]) and rec.finish in ("stop", "length")
        assert (rec.answer is None) == (rec.failure is not None)


# ---- a task's gen_prefix (Meta's recipes) under a chat template: continuing the assistant turn

PREFILLED = GenerateRequest("anatomy/0", "[...]", (".",), 10, (
    {"role": "user", "content": "Which bone is in the ear? A. stapes B. femur"},
    {"role": "assistant", "content": "The best answer is"}))


def test_a_prefill_is_sent_as_each_server_continues_it():
    path, body = server_generate.openai_request("m", PREFILLED)
    assert path == "/chat/completions" and body["messages"][-1]["role"] == "assistant"
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert "continue_final_message" not in server_generate.openai_request("m", REQUESTS[2])[1]
    path, body = server_generate.ollama_request("m", PREFILLED)  # Ollama continues by itself
    assert path == "/api/chat" and body["messages"] == list(PREFILLED.messages)
    assert "continue_final_message" not in body


class _Counting(_Threaded):
    """Reports prompt tokens: fewer when asked to continue (`continues`), or none at all."""

    def __init__(self, continues: bool, usage: bool = True) -> None:
        class Handler(_Handler):
            def do_GET(self) -> None:
                self.send(200, {"data": [{"id": "m"}]})

            def do_POST(self) -> None:
                body = json.loads(self.body())
                tokens = 7 if continues and body.get("continue_final_message") else 12
                answer = {"choices": [{"message": {"content": "x"}, "finish_reason": "length"}]}
                self.send(200, {**answer, "usage": {"prompt_tokens": tokens}} if usage
                          else answer)

        self.start(Handler)


@pytest.mark.parametrize("continues,usage,error", [
    (True, True, None), (False, True, "does not continue a final assistant message"),
    (True, False, "reports no usage.prompt_tokens")])
def test_openai_checks_the_server_continues_a_prefill(continues, usage, error):
    with _Counting(continues, usage) as server:
        config = RunConfig.from_spec(f"openai:{server.url}/v1", model_name="m", format="llama",
                                     apply_chat_template=True)
        if error is None:
            backends.create(config).close()
        else:
            with pytest.raises(BackendError, match=error):
                backends.create(config)
        # no template, no prefill turn: the plain prompt goes to /completions, no check
        backends.create(config.with_(apply_chat_template=False)).close()


@pytest.mark.slow
def test_llamacpp_python_server_cannot_continue_a_prefill_and_says_so(llama_server):
    config = RunConfig.from_spec(f"openai:{llama_server.base}", model_name=MODEL_ID,
                                 format="llama", apply_chat_template=True)
    with pytest.raises(BackendError, match="does not continue a final assistant message"):
        backends.create(config)


@pytest.mark.slow
def test_a_continuing_server_reads_the_prompt_gguf_renders(llm, gguf_path, mmlu_dir, tmp_path):
    """--format llama --apply-chat-template through openai: on a vLLM-shaped server: the
    prompt the server renders is byte for byte the context gguf: generates from (the prefill
    continued, no new turn), and its greedy continuation is recorded and scored."""
    from mmlu_bench.cli import main
    from mmlu_bench.prompts import sha256
    from mmlu_bench.records import read

    from .servers import ContinuingChatServer

    common = ["--format", "llama", "--apply-chat-template", "--num-fewshot", "2", "--data-dir",
              str(mmlu_dir), "--subjects", "anatomy", "--limit", "2", "--no-progress"]
    with ContinuingChatServer(llm) as server:
        assert main(["run", "--model", f"openai:{server.url}/v1", "--model-name", "m",
                     "--concurrency", "1", "--output", str(tmp_path / "o"), *common]) == 0
    assert main(["run", "--model", f"gguf:{gguf_path}", "--threads", "1", "--output",
                 str(tmp_path / "g"), *common]) == 0
    served, local_run = read(tmp_path / "o/records.jsonl")[1], read(tmp_path / "g/records.jsonl")[1]
    asked = server.prompts[2:]  # after check_prefill's two
    assert len(asked) == 2 and all(p.endswith("<|im_start|>assistant\nThe best answer is")
                                   for p in asked)
    assert sorted(map(sha256, asked)) == sorted(r.prompt_sha256 for r in local_run)
    assert [r.qid for r in served] == ["anatomy/0", "anatomy/1"]
    assert all(r.response is not None for r in served)
