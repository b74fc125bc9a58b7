"""Greedy generation for the gguf: backend: llama.cpp's own completion loop, as lm-eval's
gguf model gets it from a llama.cpp server (temperature 0, the stop strings, max tokens).

llama.cpp stops at the model's end-of-text and at the stop strings, and keeps the KV cache
of the longest prefix the next prompt shares (a unit's description and few-shot examples run
once while prompts go in order). A chat format's turns are rendered by the GGUF's own chat
template (create_chat_completion).
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
    if r.messages is not None:
        out = llm.create_chat_completion(list(r.messages), max_tokens=r.max_tokens,
                                         temperature=0.0, stop=list(r.until) or None,
                                         seed=SEED)
        text = out["choices"][0]["message"]["content"] or ""
    else:
        n = len(backend.encode(r.context))
        if n + r.max_tokens > backend.n_ctx:
            raise BackendError(f"{r.qid}: the prompt is {n} tokens; with {r.max_tokens} to "
                               f"generate that is more than the llama.cpp context of "
                               f"{backend.n_ctx}; raise --ctx-size.")
        out = llm.create_completion(r.context, max_tokens=r.max_tokens, temperature=0.0,
                                    stop=list(r.until) or None, seed=SEED)
        text = out["choices"][0]["text"] or ""
    usage = out.get("usage") or {}
    finish = "length" if out["choices"][0].get("finish_reason") == "length" else "stop"
    return Generation(r.qid, cut_at_stop(text, r.until)[0],
                      int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)),
                      finish)
