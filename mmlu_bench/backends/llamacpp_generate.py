"""Greedy generation for the gguf: backend: llama.cpp's own completion loop, as lm-eval's
gguf model gets it from a llama.cpp server (temperature 0, the stop strings, max tokens).

llama.cpp stops at the model's end-of-text and at the stop strings, and keeps the KV cache
of the longest prefix the next prompt shares (a unit's description and few-shot examples run
once while prompts go in order). A text prompt (plain, or rendered by the GGUF's template under
--apply-chat-template) is fed as the token ids the backend's lm-eval tokenizer gives; a format
that sends its turns as they are (simple-evals without the flag) goes through llama.cpp's chat
completion and the GGUF's template there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..errors import BackendError
from ..schema import GenerateRequest, Generation
from .textgen import cut_at_stop

SEED = 1234


def generate(backend, requests: Sequence[GenerateRequest], every: int
             ) -> Iterator[list[Generation]]:
    done: list[Generation] = []
    for r in requests:
        done.append(_one(backend, r))
        if len(done) >= every:
            yield done
            done = []
    if done:
        yield done


def _one(backend, r: GenerateRequest) -> Generation:
    llm = backend.llm
    backend.use_threads()
    if r.messages is not None:
        out = llm.create_chat_completion(list(r.messages), max_tokens=r.max_tokens,
                                         temperature=0.0, stop=list(r.until) or None,
                                         seed=SEED)
        text = out["choices"][0]["message"]["content"] or ""
    else:
        tokens = backend.encode(r.context)
        if len(tokens) + r.max_tokens > backend.n_ctx:
            raise BackendError(f"{r.qid}: the prompt is {len(tokens)} tokens; with "
                               f"{r.max_tokens} to generate that is more than the llama.cpp "
                               f"context of {backend.n_ctx}; raise --ctx-size.")
        # The token ids, not the text: llama.cpp would add a BOS to a text that already
        # starts with one (a chat template's output); these are lm-eval's (one BOS).
        out = llm.create_completion(tokens, max_tokens=r.max_tokens, temperature=0.0,
                                    stop=list(r.until) or None, seed=SEED)
        text = out["choices"][0]["text"] or ""
    usage = out.get("usage") or {}
    finish = "length" if out["choices"][0].get("finish_reason") == "length" else "stop"
    return Generation(r.qid, cut_at_stop(text, r.until)[0],
                      int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)),
                      finish)
