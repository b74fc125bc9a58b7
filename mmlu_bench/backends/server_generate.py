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
from collections.abc import Callable, Sequence
from typing import ClassVar

from ..schema import GenerateRequest, Generation
from .http import Transient, score_parallel
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


def openai_parse(answer) -> tuple[str, str, int]:
    """(text, finish, tokens) from a /completions or /chat/completions answer."""
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        finish = choice.get("finish_reason") or "stop"
    except (KeyError, IndexError, TypeError) as e:
        raise Transient(f"the server's answer holds no text ({type(e).__name__}: {e})") from None
    usage = answer.get("usage") or {}
    tokens = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    return text or "", finish, tokens  # a None content is lm-eval's "" placeholder


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


def ollama_parse(answer) -> tuple[str, str, int]:
    try:
        text = answer["message"]["content"] if "message" in answer else answer["response"]
    except (KeyError, TypeError) as e:
        raise Transient(f"Ollama's answer holds no text ({type(e).__name__}: {e})") from None
    finish = answer.get("done_reason") or "stop"
    tokens = int(answer.get("prompt_eval_count") or 0) + int(answer.get("eval_count") or 0)
    return text or "", finish, tokens


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
    at a time, each built by `text_request` and read by `text_parse`."""

    text_request: ClassVar[Callable[[str, GenerateRequest], tuple[str, dict]]]
    text_parse: ClassVar[Callable]

    def generate(self, requests: Sequence[GenerateRequest]):
        return score_parallel(requests, self._generate_one, self.concurrency)

    def _generate_one(self, r: GenerateRequest, stop: threading.Event) -> Generation:
        return generate_one(self.client, self.text_request(self.model, r), self.text_parse, r,
                            stop)
