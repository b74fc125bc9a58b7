"""openai:BASE_URL: an OpenAI-compatible server's /completions, scored from top logprobs.

One request per question: the rendered prompt, one generated token, and the log-probabilities
of that position's top 20 alternatives. Each letter's log-likelihood is read from there (exact
for a one-token continuation like " A"); a letter outside the top 20 is asked again with the
prompt echoed (server_echo.py), and is None (missing) where the server cannot echo.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..errors import BackendError, ConfigError
from . import http, server_api
from .http import Client, HTTPStatusError, ServerBackend, Transient
from .server_chat import ChatLetters, openai_chat_body
from .server_echo import EchoFallback
from .server_generate import ServerText

TOP_K = 20  # the most alternatives OpenAI's API returns; llama.cpp and vLLM accept it too
PROBE = "The capital of France is"


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"openai:{url}: give the server's base URL, e.g. "
                          "openai:http://127.0.0.1:8080/v1")
    return url.rstrip("/")


class OpenAIBackend(EchoFallback, ChatLetters, ServerText, ServerBackend):
    # top-k: a letter outside the top 20 is asked again with echo (server_echo.py), and is
    # recorded as missing where the server's echo cannot score it
    api = server_api.OPENAI

    def __init__(self, config) -> None:
        self.base = check_url(config.model)
        self.model = config.model_name
        self.concurrency = config.concurrency
        # The key is read here, for the CLI and the Python API alike; never written anywhere.
        key = config.api_key or os.environ.get("OPENAI_API_KEY")
        self.client = Client(self.base, key, config.timeout)
        self.min_tokens = True
        self._check_model_listed()
        self.generating = config.format_spec().needs == "generate"
        if not self.generating:  # generation needs no logprobs
            self._probe()

    def info(self) -> dict:
        return {"device": "server", "dtype": "unknown", "server": self.base,
                "server_model": self.model, "top_logprobs": TOP_K}

    def _body(self, prompt: str) -> dict:
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0,
                "logprobs": TOP_K}
        if self.min_tokens:
            # When end-of-text is the likeliest next token (instruct models after "Answer:"),
            # a server stops before generating anything and returns no logprobs at all.
            # min_tokens (llama-cpp-python, vLLM) forbids that stop. llama-cpp-python reads the
            # logprobs from the raw logits, so they stay the model's own.
            body["min_tokens"] = 1
        return body

    def _chat_body(self, messages: list[dict]) -> dict:
        return openai_chat_body(self.model, messages, self.min_tokens)

    def _check_model_listed(self) -> None:
        """Refuse a model the server does not list. Servers without /models are let through."""
        try:
            listing = self.client.get("/models", retry=http.STARTUP_RETRY)
        except HTTPStatusError:
            return
        ids = [m.get("id") for m in (listing or {}).get("data") or [] if isinstance(m, dict)]
        if ids and self.model not in ids:
            raise BackendError(f"{self.base} does not serve model {self.model!r}; it serves "
                               f"{', '.join(map(str, ids[:10]))}: pass one as --model-name")

    def _probe(self) -> None:
        try:
            try:
                answer = self.client.post("/completions", self._body(PROBE),
                                          retry=http.STARTUP_RETRY)
            except HTTPStatusError as e:
                if e.status not in (400, 422):
                    raise
                self.min_tokens = False  # a server that rejects the field: send it without
                answer = self.client.post("/completions", self._body(PROBE),
                                          retry=http.STARTUP_RETRY)
        except HTTPStatusError as e:
            raise BackendError(self._refusal(e)) from None
        try:
            self.api.letters(answer)
        except Transient:
            raise BackendError(f"{self.base}/completions returned no logprobs; mmlu-bench needs "
                               "a server that returns top logprobs (llama.cpp, vLLM, ...)"
                               ) from None

    def _refusal(self, e: HTTPStatusError) -> str:
        if e.status in (401, 403):
            return (f"{e.url}: the server refused the API key (HTTP {e.status}); pass --api-key "
                    "or set OPENAI_API_KEY")
        if e.status == 404 and "model" in e.detail.lower():
            return f"{e.url}: unknown model {self.model!r} ({e.detail}); check --model-name"
        if e.status == 404:
            return (f"{e.url} does not exist (HTTP 404); is {self.base} the API base URL? "
                    "It usually ends in /v1")
        return str(e)
