"""Greedy generation for the vllm: backend, as lm-eval 0.4.13's vllm model asks for it.

Each prompt is tokenized as the hf: backend tokenizes it (lm-eval's tokens, a chat format's
turns rendered by the model's template, left-truncated to leave room for max_tokens) and given
to the engine as token ids; greedy (temperature 0) until the format's stop strings, the model's
end-of-text or max_tokens; the text decoded with special tokens skipped and cut at the first
stop string (the format's plus the decoded EOS, lm-eval's rule). The engine batches the
requests itself and keeps the KV cache of shared prefixes (the few-shot examples).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..schema import GenerateRequest, Generation
from .hf_generate import prompt_row
from .textgen import cut_at_stop

SEED = 1234
# Requests handed to the engine at once; the runner records each chunk as it finishes.
CHUNK = 256


def generate_groups(backend, groups: Iterable[tuple[Sequence[GenerateRequest], frozenset[str]]]
                    ) -> Iterator[list[Generation]]:
    rows = [prompt_row(backend, r) for requests, skip in groups for r in requests
            if r.qid not in skip]
    for i in range(0, len(rows), CHUNK):
        yield _generate(backend, rows[i:i + CHUNK])


def _generate(backend, rows) -> list[Generation]:
    from vllm import SamplingParams, TokensPrompt

    prompts = [TokensPrompt(prompt_token_ids=list(row.tokens)) for row in rows]
    params = [SamplingParams(temperature=0.0, max_tokens=row.request.max_tokens, seed=SEED,
                             stop=[s for s in row.stops if s] or None,
                             skip_special_tokens=True) for row in rows]
    outputs = backend.llm.generate(prompts, params, use_tqdm=False)
    done = []
    for row, output in zip(rows, outputs, strict=True):
        out = output.outputs[0]
        text, _ = cut_at_stop(out.text, row.stops)
        finish = "length" if out.finish_reason == "length" else "stop"
        done.append(Generation(row.request.qid, text, len(row.tokens) + len(out.token_ids),
                               finish))
    return done
