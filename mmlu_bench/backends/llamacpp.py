"""In-process llama.cpp backend (`gguf:`): a quantized GGUF file run by llama-cpp-python.

Numbers follow lm-eval's protocol: the same token rows as the hf: backend (transformers'
tokenizer built from the GGUF's metadata, lm-eval's BOS rule, tokens.py's rows); the arithmetic
is llama.cpp's, on the quantized weights, so log-likelihoods differ slightly from a dequantized
fp32 run.

Speed without changing a number:
- one evaluation per question when every continuation is one token, reading the four letters
  from the next-token logits at the answer position;
- rows are sorted by their tokens, so consecutive rows share the longest prefix, and the KV
  cache of that prefix is kept: only the tokens after it are evaluated.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import BackendError, ModelError
from ..schema import ChoiceScores, ScoreRequest
from . import tokens as tk
from .base import UnitScorer, unrecorded
from .cpu_share import CpuShare
from .llamacpp_lanes import in_lanes

log = logging.getLogger(__name__)

# Questions per list handed back to the runner (one records write each).
YIELD_EVERY = 16
# Contexts at once on a multi-core CPU (llamacpp_lanes.py), as the hf: backend's lanes.
CPU_LANES = 2
# Fewest tokens per evaluation that reads logits (see logprobs).
MIN_EVAL = 8


class LlamaCppBackend(UnitScorer):
    """Its spec: backends/__init__.py. Chat: the GGUF's tokenizer.chat_template, rendered as
    transformers renders it."""

    exact = True

    def __init__(self, config) -> None:
        import llama_cpp

        self.path = Path(config.model).expanduser()
        self.n_gpu_layers = config.n_gpu_layers if llama_cpp.llama_supports_gpu_offload() else 0
        self.cpu = CpuShare(config.threads)
        # Lanes: CPU contexts of one thread each (llamacpp_lanes.py); one on a GPU.
        self.lanes = 1 if self.n_gpu_layers else min(CPU_LANES, self.cpu.most)
        self._threads = self._lane_threads()
        self.llm = _load(self.path, config, *self._counts(self._threads))
        self.n_ctx = self.llm.n_ctx()
        # lm-eval's left-truncation limit is the model's trained context; longer prompts than
        # the context we allocated are refused (see _check_fits), never silently cut.
        self.max_length = llama_cpp.llama_model_n_ctx_train(self.llm.model)
        self.n_vocab = self.llm.n_vocab()
        self._encode, self.tokenizer = self._pick_tokenizer()
        self._identity: dict | None = None
        self._bos_text = self._special_tokens().get("bos_token")
        self.views = [self] + [self._view(config) for _ in range(self.lanes - 1)]

    def _view(self, config) -> LlamaCppBackend:
        """This backend with a context of its own on the same file, for another lane."""
        view = copy.copy(self)
        view.llm = _load(self.path, config, *self._counts(self._threads))
        return view

    def score_groups(self, groups):
        return in_lanes(self.views, unrecorded(groups), "score")

    def generate_groups(self, groups):
        return in_lanes(self.views, unrecorded(groups), "generate")

    def info(self) -> dict:
        if self._identity is None:
            from .identity import file_identity

            self._identity = file_identity(self.path)
        device = f"gpu ({self.n_gpu_layers} layers)" if self.n_gpu_layers else "cpu"
        return {"device": device, "dtype": "gguf", "n_ctx": self.n_ctx,
                "tokenizer": self.tokenizer, "lanes": self.lanes, **self.cpu.info(),
                **self._identity}

    def _lane_threads(self) -> int:
        return max(1, self.cpu.check() // self.lanes)

    def _counts(self, n: int) -> tuple[int, int]:
        """(threads for one-token decoding steps, for prompt batches). One context alone
        keeps llama-cpp-python's default of half the cores for decoding (a token's small
        products wait less at each barrier) unless --threads sets both."""
        alone = self.lanes == 1 and not self.cpu.fixed
        return (max(1, min(n, self.cpu.most // 2)) if alone else n), n

    def use_threads(self) -> None:
        """This context's next evaluations run on the threads the load allows its lane."""
        if (n := self._lane_threads()) != self._threads:
            import llama_cpp

            self._threads = n
            llama_cpp.llama_set_n_threads(self.llm.ctx, *self._counts(n))

    def close(self) -> None:
        for view in getattr(self, "views", [self]):
            if view.llm is not None:
                view.llm.close()
                view.llm = None

    def encode(self, text: str) -> list[int]:
        return self._encode(text)

    def _pick_tokenizer(self) -> tuple[tk.Encode, str]:
        """(encode, what info() records). lm-eval tokenizes with transformers' tokenizer built
        from the GGUF metadata; llama.cpp's own splits some texts differently ("\n\n" before
        a digit is one token in llama.cpp, two in transformers, for SmolLM2), so it is used
        only when transformers cannot read the file."""
        try:
            from .hf_load import gguf_tokenizer

            tokenizer = gguf_tokenizer(self.path)
        except ImportError as e:
            why = f"transformers cannot read GGUF files here: {e}"
            return self._llama_encode, _fallback(why)
        # transformers raises many kinds for a GGUF it cannot read (ValueError for an
        # unsupported architecture, KeyError for missing metadata, ...): all mean "fall back".
        except Exception as e:  # noqa: BLE001
            why = f"transformers could not read this GGUF: {type(e).__name__}: {e}"
            return self._llama_encode, _fallback(why)
        if len(tokenizer) > self.n_vocab:  # ids beyond llama.cpp's vocabulary: not the same one
            why = (f"transformers read {len(tokenizer)} tokens from this GGUF, llama.cpp "
                   f"{self.n_vocab}")
            return self._llama_encode, _fallback(why)
        return tk.lm_eval_encoder(tokenizer), "transformers"

    def _llama_encode(self, text: str) -> list[int]:
        # add_bos=True asks for BOS only where the GGUF metadata wants one
        # (tokenizer.ggml.add_bos_token), which is what the HF tokenizer of the same model does:
        # SmolLM2 (GPT-2 style) gets none, Llama-style models get one. special=True because the
        # HF tokenizer lm-eval uses turns a special-token string in the text ("<|im_start|>")
        # into that token; no MMLU question contains one.
        # A text that already starts with the BOS string (a chat template's output) gets no
        # second one, as lm-eval's HFLM.tok_encode.
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def chat_renderer(self):
        from .chat_template import template_renderer

        return template_renderer(self.llm.metadata.get("tokenizer.chat_template"),
                                 self._special_tokens(), str(self.path))

    def _special_tokens(self) -> dict[str, str]:
        """The special-token variables transformers gives a template for this file: the
        GGUF's bos/eos/unknown/padding token ids, as token text."""
        names = {"bos_token": "bos_token_id", "eos_token": "eos_token_id",
                 "unk_token": "unknown_token_id", "pad_token": "padding_token_id"}
        out = {}
        for name, key in names.items():
            value = self.llm.metadata.get(f"tokenizer.ggml.{key}")
            if value is not None and 0 <= int(value) < self.n_vocab:
                out[name] = self.llm.detokenize([int(value)], special=True).decode(
                    "utf-8", errors="replace")
        return out

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
        at least the last `keep` positions are evaluated afresh, each read from an evaluation
        of at least MIN_EVAL tokens: llama.cpp computes a one-token batch with other kernels,
        and a chat prompt's letter read after evaluating its newline alone moved by up to 0.1
        nats against evaluating the same tokens in one batch.
        """
        llm = self.llm
        first = len(tokens) - keep  # position of the first logits to read
        shared = min(_common_length(llm.input_ids[: llm.n_tokens], tokens), first)
        llm.n_tokens = shared  # eval() drops the KV cache from here on
        out = []
        self.use_threads()
        for end in range(first + 1, len(tokens) + 1):
            llm.n_tokens = max(0, min(llm.n_tokens, end - MIN_EVAL))
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


def _fallback(why: str) -> str:
    why = " ".join(why.split())[:240]
    log.warning("tokenizing with llama.cpp's tokenizer, which splits some prompts differently "
                "from lm-eval's (%s)", why)
    return f"llama.cpp ({why})"


def _load(path: Path, config, n_threads: int, n_threads_batch: int):
    if not path.is_file():
        raise ModelError(f"{path}: no such GGUF file; check the path.")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path}: not a GGUF file (it does not start with 'GGUF').")
    from llama_cpp import Llama

    try:
        # n_threads alone would leave prompt evaluation (all of scoring) on every core.
        with _without_amx():
            return Llama(model_path=str(path), n_gpu_layers=config.n_gpu_layers,
                         n_threads=n_threads, n_threads_batch=n_threads_batch,
                         n_ctx=config.ctx_size, logits_all=False, verbose=False)
    except (ValueError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: llama.cpp could not load it ({first[:200]}); the file may "
                         "be truncated or corrupt.") from None


@contextlib.contextmanager
def _without_amx():
    """On a CPU with AMX, load without llama.cpp's extra weight layouts (AMX tiles, repacked).

    llama-cpp-python 0.3.36 segfaulted in ggml_backend_amx_mul_mat at the first evaluation of
    SmolLM2 Q4_1 on an AMX CPU (AMX_INT8 in its system info, tile use permitted by the
    kernel). Its Llama class has no switch for use_extra_bufts, so the default model params it
    starts from are swapped for the load. Elsewhere nothing changes.
    """
    import llama_cpp

    module = llama_cpp.llama_cpp
    if b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info():
        yield
        return
    real = module.llama_model_default_params

    def params():
        p = real()
        p.use_extra_bufts = False
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = real


def _common_length(done: np.ndarray, tokens: Sequence[int]) -> int:
    n = min(len(done), len(tokens))
    if n == 0:
        return 0
    differ = np.flatnonzero(done[:n] != np.asarray(tokens[:n]))
    return int(differ[0]) if len(differ) else n


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())
