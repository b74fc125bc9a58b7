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

A task's gen_prefix under a chat template (Meta's "The best answer is") ends the messages in an
assistant turn the model must continue. OpenAI-compatible servers are asked to continue it as
vLLM (and SGLang, Aphrodite) take it, transformers' way: `continue_final_message: true`,
`add_generation_prompt: false` (llama.cpp's llama-server continues a final assistant message by
itself and ignores the fields); a server that would close the turn and start a new one is found
at start-up (check_prefill) and refused. Ollama's /api/chat continues a final assistant message
by itself: its templates leave the last assistant turn open (ollama#6778; a custom Modelfile
template that closes every turn would not). The answer holds only what the model added, as
lm-eval's generations do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from ..errors import BackendError
from ..prompts import prefilled
from ..schema import GenerateRequest, Generation
from .http import STARTUP_RETRY, score_parallel
from .textgen import cut_at_stop

log = logging.getLogger(__name__)

EMPTY_TRIES = 3
SEED = 1234
# Continue the final (assistant) message instead of opening a new turn: vLLM's chat extras.
CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}


def openai_request(model: str, r: GenerateRequest) -> tuple[str, dict]:
    """(endpoint, body) for an OpenAI-compatible server."""
    body: dict = {"model": model, "max_tokens": r.max_tokens, "temperature": 0, "seed": SEED}
    if r.until:
        body["stop"] = list(r.until)[:4]
    if r.messages is not None:
        body["messages"] = list(r.messages)
        return "/chat/completions", {**body, **(CONTINUE if prefilled(r.messages) else {})}
    return "/completions", {**body, "prompt": r.context}


def check_prefill(client, model: str, base: str) -> None:
    """Refuse an OpenAI-compatible server that cannot continue an assistant turn. Two chat
    requests of one token, the same short answer after a question: closed (a new turn after
    it) and continued (CONTINUE). Continuing reads fewer prompt tokens (no end-of-turn, no new
    assistant header); a server that ignores the fields reads the same number."""
    chat = [{"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue"}]

    def prompt_tokens(extra: dict) -> int:
        answer = client.post("/chat/completions", {"model": model, "messages": chat,
                                                   "max_tokens": 1, "temperature": 0, **extra},
                             retry=STARTUP_RETRY)
        usage = answer.get("usage") if isinstance(answer, dict) else None
        return int((usage or {}).get("prompt_tokens") or 0)

    closed, continued = prompt_tokens({}), prompt_tokens(CONTINUE)
    if not closed or not continued:
        raise BackendError(f"{base}/chat/completions reports no usage.prompt_tokens, so "
                           "mmlu-bench cannot tell whether it continues an assistant turn (the "
                           "task's gen_prefix); use hf: or gguf:, or leave out "
                           "--apply-chat-template.")
    if continued >= closed:
        raise BackendError(f"{base}/chat/completions does not continue a final assistant "
                           "message (it ignores continue_final_message: the prompt reads "
                           f"{continued} tokens either way), so the task's gen_prefix would "
                           "start a new turn; use vLLM or llama.cpp's llama-server, hf: or "
                           "gguf:, or leave out --apply-chat-template.")


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
