"""Greedy generation through servers: what openai: and ollama: send and read for generative
formats. No log-probabilities are needed, so any Ollama version and chat-only servers work.

A request with `messages` (simple-evals; any generative format under --apply-chat-template,
lm-eval's messages) goes to the chat endpoint, the server's chat template rendering the turns;
a text-only one (generative, cot) goes to the raw-text endpoint, so the model reads lm-eval's
prompt byte for byte. Payloads follow lm-eval's API models
(models/openai_completions.py): temperature 0, seed 1234, the format's stop strings (at most 4,
as OpenAI allows), max_tokens. The text is cut at the stop strings again here, in case a server
returns them. An empty answer is asked again (EMPTY_TRIES in all) and then recorded as it is:
a failed extraction, never a dropped question.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from ..schema import GenerateRequest, Generation
from .http import score_parallel
from .textgen import cut_at_stop

log = logging.getLogger(__name__)

EMPTY_TRIES = 3
SEED = 1234


def openai_request(model: str, r: GenerateRequest) -> tuple[str, dict]:
    """(endpoint, body) for an OpenAI-compatible server."""
    body: dict = {"model": model, "max_tokens": r.max_tokens, "temperature": 0, "seed": SEED}
    if r.until:
        body["stop"] = list(r.until)[:4]
    if r.messages is not None:
        return "/chat/completions", {**body, "messages": list(r.messages)}
    return "/completions", {**body, "prompt": r.context}


def ollama_request(model: str, r: GenerateRequest) -> tuple[str, dict]:
    """(endpoint, body) for Ollama's native API: /api/chat for turns, else /api/generate with
    raw=true (no template: the prompt as the format wrote it)."""
    options = {"temperature": 0, "seed": SEED, "num_predict": r.max_tokens}
    if r.until:
        options["stop"] = list(r.until)
    body = {"model": model, "stream": False, "options": options}
    if r.messages is not None:
        return "/api/chat", {**body, "messages": list(r.messages)}
    return "/api/generate", {**body, "prompt": r.context, "raw": True}


def generate_one(client, request: tuple[str, dict], parse, r: GenerateRequest,
                 stop: threading.Event) -> Generation:
    """One question: the client retries network and server failures; an empty text is asked
    again, then recorded."""
    path, body = request
    for attempt in range(1, EMPTY_TRIES + 1):
        text, finish, tokens = client.post(path, body, check=parse, stop=stop)
        if text.strip() or attempt == EMPTY_TRIES or stop.is_set():
            break
        log.warning("%s: the server answered with empty text; asking again", r.qid)
    text, _ = cut_at_stop(text, r.until)
    return Generation(r.qid, text, tokens, "length" if finish == "length" else "stop")


class ServerText:
    """Mixin for a ServerBackend: greedy text for generative formats, `concurrency` requests
    at a time, each built by its api's `text_request` and read by its `text`."""

    def generate(self, requests: Sequence[GenerateRequest]):
        return score_parallel(requests, self._generate_one, self.concurrency)

    def _generate_one(self, r: GenerateRequest, stop: threading.Event) -> Generation:
        return generate_one(self.client, self.api.text_request(self.model, r), self.api.text, r,
                            stop)
