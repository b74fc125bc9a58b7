"""In-process llama.cpp backend (`gguf:`): a quantized GGUF file run by llama-cpp-python.

Numbers follow lm-eval's protocol (the same token rows as the hf: backend, via tokens.py); the
arithmetic is llama.cpp's, on the quantized weights, so log-likelihoods differ slightly from a
dequantized fp32 run.

Speed without changing a number:
- one evaluation per question when every continuation is one token, reading the four letters
  from the next-token logits at the answer position;
- rows are sorted by their tokens, so consecutive rows share the longest prefix, and the KV
  cache of that prefix is kept: only the tokens after it are evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import BackendError, ModelError
from ..schema import ChoiceScores, ScoreRequest
from . import tokens as tk
from .base import UnitScorer

log = logging.getLogger(__name__)

# Questions per list handed back to the runner (one records write each).
YIELD_EVERY = 16


class LlamaCppBackend(UnitScorer):
    name = "gguf"
    exact = True
    capabilities = frozenset({"loglikelihood", "generate"})

    def __init__(self, config) -> None:
        import llama_cpp

        self.path = Path(config.model).expanduser()
        self.n_gpu_layers = config.n_gpu_layers if llama_cpp.llama_supports_gpu_offload() else 0
        self.llm = _load(self.path, config)
        self.n_ctx = self.llm.n_ctx()
        # lm-eval's left-truncation limit is the model's trained context; longer prompts than
        # the context we allocated are refused (see _check_fits), never silently cut.
        self.max_length = llama_cpp.llama_model_n_ctx_train(self.llm.model)
        self.n_vocab = self.llm.n_vocab()
        self._identity: dict | None = None

    def info(self) -> dict:
        if self._identity is None:
            from .identity import file_identity

            self._identity = file_identity(self.path)
        device = f"gpu ({self.n_gpu_layers} layers)" if self.n_gpu_layers else "cpu"
        return {"device": device, "dtype": "gguf", "n_ctx": self.n_ctx, **self._identity}

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
            self.llm = None

    def encode(self, text: str) -> list[int]:
        # add_bos=True asks for BOS only where the GGUF metadata wants one
        # (tokenizer.ggml.add_bos_token), which is what the HF tokenizer of the same model does:
        # SmolLM2 (GPT-2 style) gets none, Llama-style models get one. special=True because the
        # HF tokenizer lm-eval uses turns a special-token string in the text ("<|im_start|>")
        # into that token; no MMLU question contains one.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[ChoiceScores]]:
        rows = [row for r in requests for row in tk.plan_rows(r, self.encode, self.max_length)]
        for row in rows:
            self._check_fits(row)
        collector = tk.Collector(rows)
        done: list[ChoiceScores] = []
        # Lexicographic order puts rows with the longest common prefix next to each other.
        # Targets come from tokenizing context + " A" (tokens.encode_pair): the letter token
        # with its leading space (" A", 330 in SmolLM2), not the bare "A" (49).
        for row in sorted(rows, key=lambda r: r.tokens):
            keep = max(len(t) for _, t in row.reads)
            scores = collector.add(row, self.logprobs(row.tokens, keep))
            if scores is not None:
                done.append(scores)
            if len(done) >= YIELD_EVERY:
                yield done
                done = []
        if done:
            yield done
        assert not collector.pending, f"unfinished questions: {sorted(collector.pending)[:3]}"

    def generate(self, requests):
        """Greedy text for generative formats (llamacpp_generate.py)."""
        from .llamacpp_generate import generate

        return generate(self, requests, YIELD_EVERY)

    def logprobs(self, tokens: Sequence[int], keep: int) -> list[np.ndarray]:
        """Log-softmax over the vocabulary at the last `keep` positions of `tokens`.

        Reuses the KV cache of the longest prefix `tokens` shares with what was evaluated last;
        at least the last `keep` positions are evaluated afresh.
        """
        llm = self.llm
        first = len(tokens) - keep  # position of the first logits to read
        shared = min(_common_length(llm.input_ids[: llm.n_tokens], tokens), first)
        llm.n_tokens = shared  # eval() drops the KV cache from here on
        out = []
        for end in range(first + 1, len(tokens) + 1):
            llm.eval(tokens[llm.n_tokens:end])
            out.append(_log_softmax(self._last_logits()))
        return out

    def _last_logits(self) -> np.ndarray:
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64)

    def _check_fits(self, row: tk.Row) -> None:
        if len(row.tokens) > self.n_ctx:
            raise BackendError(
                f"{row.qid}: the prompt is {len(row.tokens)} tokens, more than the llama.cpp "
                f"context of {self.n_ctx}; raise --ctx-size (the model was trained on "
                f"{self.max_length}).")


def _load(path: Path, config):
    if not path.is_file():
        raise ModelError(f"{path}: no such GGUF file; check the path.")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path}: not a GGUF file (it does not start with 'GGUF').")
    from llama_cpp import Llama

    try:
        # n_threads alone would leave prompt evaluation (all of scoring) on every core.
        return Llama(model_path=str(path), n_gpu_layers=config.n_gpu_layers,
                     n_threads=config.threads, n_threads_batch=config.threads,
                     n_ctx=config.ctx_size, logits_all=False, verbose=False)
    except (ValueError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: llama.cpp could not load it ({first[:200]}); the file may "
                         "be truncated or corrupt.") from None


def _common_length(done: np.ndarray, tokens: Sequence[int]) -> int:
    n = min(len(done), len(tokens))
    if n == 0:
        return 0
    differ = np.flatnonzero(done[:n] != np.asarray(tokens[:n]))
    return int(differ[0]) if len(differ) else n


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())
