"""Prompt tokens counted as lm-eval counts them: context + continuation of every request, with
its _encode_pair split (mmlu-bench's implementation of that rule) and the model's tokenizer.

mmlu-bench's records keep only each prompt's sha256, so its prompts are either rebuilt with
mmlu-bench's code (MMLU) or taken from lm-eval's requests where the sha256 matches (MMLU-Pro),
and counted the same way.
"""

from __future__ import annotations

from pathlib import Path

from agreement import sha256


class TokenCounter:
    """Counts (context, continuation) pairs' tokens as lm-eval does."""

    def __init__(self, model: Path) -> None:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        from mmlu_bench.backends.tokens import encode_pair

        hf_logging.set_verbosity_error()
        if model.is_file():
            self.tok = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
        else:
            self.tok = AutoTokenizer.from_pretrained(str(model))
        self.encode_pair = encode_pair
        bos = self.tok.bos_token
        self.bos = bos if isinstance(bos, str) and bos else None

    def encode(self, text: str) -> list[int]:
        if self.bos and text.startswith(self.bos):
            return self.tok.encode(text, add_special_tokens=False)
        return self.tok.encode(text)

    def count(self, pairs) -> int:
        total = 0
        for context, continuation in pairs:
            ctx, cont = self.encode_pair(self.encode, context, continuation)
            total += len(ctx) + len(cont)
        return total


def planned_prompts(data_dir: str, num_fewshot: int, subjects: list[str],
                    limit: int) -> dict[str, tuple[str, list]]:
    """MMLU qid -> (prompt sha256, [(context, continuation)] x4), as mmlu-bench builds them."""
    from mmlu_bench import dataset, prompts
    from mmlu_bench.tasks.mmlu import MMLU

    data = dataset.load(data_dir, tuple(subjects))
    out = {}
    for s in subjects:
        test = data.test[s][:limit] if limit else data.test[s]
        for req in prompts.build_requests(MMLU(), test, data, num_fewshot):
            out[req.qid] = (sha256(req.context), [(req.context, c) for c in req.continuations])
    return out


def longest_prompt(planned: dict[str, tuple[str, list]], counter: TokenCounter) -> int:
    """Tokens of the longest context + continuation (for llama.cpp's n_ctx)."""
    longest = 0
    for _, pairs in planned.values():
        longest = max(longest, max(counter.count([pair]) for pair in pairs))
    return longest


def count_matching(questions: list[dict], planned: dict[str, tuple[str, list]],
                   counter: TokenCounter) -> tuple[int, str | None]:
    """lm-eval's token count for the prompts mmlu-bench scored, each checked by its sha256
    against the planned prompt of the same question id. (The records' n_tokens counts what
    mmlu-bench's model reads: the context once per question when the answers are one token
    each.)"""
    total, bad = 0, []
    for q in questions:
        digest, pairs = planned.get(q["id"], (None, []))
        if digest != q["prompt_sha256"]:
            bad.append(q["id"])
            continue
        total += counter.count(pairs)
    why = (f"{len(bad)} recorded prompts differ from the rebuilt ones (e.g. {bad[0]}): not "
           "counted") if bad else None
    return total, why
