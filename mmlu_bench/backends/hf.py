"""Hugging Face transformers backend (`hf:`): a hub id, a local folder, or a .gguf file.

Speed without changing a number:
- one forward pass per question when every continuation is one token (lm-eval's one-token
  continuation case), reading the four letters at the answer position;
- logits only at the last position (`logits_to_keep`), not over the whole sequence;
- a subject's shared token prefix (description + few-shot examples) is run once and its KV cache
  reused by every batch of that subject;
- length-sorted batches within a token budget, cut where they pad least (tokens.batches);
  each batch's cache is a view of the prefix's, not a copy (_expand);
- on a multi-core CPU, two single-threaded passes at once, the next subject's prefix pass
  beside this subject's last batches (lanes.py).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..schema import ChoiceScores, ScoreRequest
from . import lanes, tokens as tk
from .base import RESUME_KEYS
from .hf_load import load

log = logging.getLogger(__name__)

# Rows sharing fewer tokens than this are run without a prefix cache (not worth the copy).
MIN_SHARED_PREFIX = 32
# Padded tokens per batch for --batch-size auto. On CPU small batches are fastest (a 135M model
# ran ~470 tok/s at batch 4 and slower at 32); accelerators like large ones.
AUTO_TOKEN_BUDGET = {"cpu": 1024, "mps": 8192, "cuda": 32768}
# What one more forward pass costs beyond its tokens, in tokens, for cutting batches where they
# pad least. On CPU a 4-token pass of a 135M model took 95 ms (the weights are read from memory
# each pass), about 48 tokens' worth. A GPU runs a pass in about the time of thousands of
# tokens, so there padding is cheap and batches stay large (not measured here: no GPU).
BATCH_OVERHEAD = {"cpu": 48, "mps": 1024, "cuda": 4096}
# Batches run at once on a multi-core CPU, each on threads/CPU_LANES threads (see lanes.py),
# each within its share of the token budget.
CPU_LANES = 2


@dataclass(frozen=True)
class _Plan:
    """One subject's work: its shared prefix, the batches to run, how to read them."""

    prefix: tuple[int, ...]
    todo: list
    skip: frozenset[str]
    collector: tk.Collector


class HFBackend:
    name = "hf"
    exact = True
    capabilities = frozenset({"loglikelihood", "generate"})
    resume_keys = RESUME_KEYS

    def __init__(self, config) -> None:
        import torch

        self.torch = torch
        self.device = _pick_device(config.device)
        self.dtype = _pick_dtype(config.dtype, self.device)
        self.batch_size = None if config.batch_size == "auto" else int(config.batch_size)
        kind = self.device.split(":")[0]
        self.token_budget = AUTO_TOKEN_BUDGET.get(kind, 4096)
        self.batch_overhead = BATCH_OVERHEAD.get(kind, 1024)
        self.prefix_sharing = config.prefix_sharing
        self.threads = torch.get_num_threads()
        self.lanes = min(CPU_LANES, self.threads) if self.device == "cpu" else 1
        self.model, self.tokenizer, self.identity = load(config, self.device, self.dtype)
        self.max_length = _max_length(self.model, self.tokenizer)
        # transformers 5.2x renamed the forward's `past_key_values` to `cache` (the old name
        # warns, then goes away); older versions know only the old name.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        bos = self.tokenizer.bos_token
        self._bos_text = bos if isinstance(bos, str) and bos else None

    def info(self) -> dict:
        return {"device": self.device, "dtype": str(self.dtype).removeprefix("torch."),
                "max_length": self.max_length, **self.identity}

    def close(self) -> None:
        self.model = None

    def encode(self, text: str) -> list[int]:
        # lm-eval 0.4.13 (add_bos_token unset) encodes with the tokenizer's own default for
        # special tokens: Llama-style tokenizers prepend BOS, GPT-2-style ones add nothing.
        # A text that already starts with the BOS string gets no second one.
        if self._bos_text and text.startswith(self._bos_text):
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.tokenizer.encode(text)

    def score(self, requests: Sequence[ScoreRequest],
              skip: frozenset[str] = frozenset()) -> Iterator[list[ChoiceScores]]:
        return self.score_groups([(requests, skip)])

    def score_groups(self, groups: Iterable[tuple[Sequence[ScoreRequest], frozenset[str]]]
                     ) -> Iterator[list[ChoiceScores]]:
        """Every unit in one stream: on a multi-core CPU the next unit's prefix pass runs
        beside this unit's last batches (lanes.py). Each unit is planned (tokenized) when its
        turn comes, over all its requests, and only batches holding a question not in its
        skip set run: a resumed run computes each question in the same batch, bit for bit."""
        # Only each subject's collector outlives its batches (rows and caches are freed as
        # subjects finish: memory stays flat over a full run); it forgets finished questions.
        checks: list[tuple[tk.Collector, frozenset[str]]] = []

        def planned() -> Iterator[_Plan]:
            for requests, skip in groups:
                plan = self._plan(requests, skip)
                checks.append((plan.collector, skip))
                if plan.todo:
                    yield plan

        with _sdpa_gqa(self.device):
            for plan, batch, logprobs in self._run(planned()):
                done = []
                for row, out in zip(batch, logprobs, strict=True):
                    scores = plan.collector.add(row, out)
                    if scores is not None and row.qid not in plan.skip:
                        done.append(scores)
                if done:
                    yield done
        for collector, skip in checks:
            unfinished = set(collector.pending) - skip
            assert not unfinished, f"unfinished questions: {sorted(unfinished)[:3]}"

    def generate_groups(self, groups) -> Iterator:
        """Greedy text until a stop string, per unit (hf_generate.py)."""
        from . import hf_generate

        with _sdpa_gqa(self.device):
            yield from hf_generate.generate_groups(self, groups)

    def _plan(self, requests: Sequence[ScoreRequest], skip: frozenset[str]) -> _Plan:
        rows = [row for r in requests for row in tk.plan_rows(r, self.encode, self.max_length)]
        shared = tk.common_prefix(rows) if self.prefix_sharing else 0
        if shared < MIN_SHARED_PREFIX:
            shared = 0
        # The token budget is for all lanes together: it bounds the memory in flight.
        batches = tk.batches(rows, shared, self.batch_size, self.token_budget // self.lanes,
                             self.batch_overhead)
        todo = [batch for batch in batches if not all(row.qid in skip for row in batch)]
        prefix = rows[0].tokens[:shared] if rows else ()
        return _Plan(prefix, todo, skip, tk.Collector(rows))

    def _run(self, plans: Iterator[_Plan]) -> Iterator[tuple[_Plan, list, list]]:
        """(plan, batch, log-softmax rows) for each batch to do: in lanes of one thread each
        on a multi-core CPU, else one pass after another."""
        def setup(plan: _Plan):  # (shared tokens, their cache) for the plan's batches
            return lambda: (len(plan.prefix), self._prefix_cache(plan.prefix) if plan.prefix
                            else None)

        def forward(batch: list[tk.Row], state):
            return self._forward(batch, *state)

        if self.lanes < 2:
            for plan in plans:
                state = setup(plan)()
                yield from ((plan, batch, forward(batch, state)) for batch in plan.todo)
            return
        yield from lanes.run(((p, setup(p), p.todo) for p in plans), forward, self.lanes,
                             self.torch.set_num_threads, self.threads // self.lanes, self.threads)

    def _prefix_cache(self, prefix: tuple[int, ...]):
        torch = self.torch
        ids = torch.tensor([prefix], device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None)
        return cache if cache is not None else out.past_key_values

    def _forward(self, batch: list[tk.Row], shared: int, cache) -> list:
        """Log-softmax rows for the last k positions of each row (k = longest continuation).

        Rows are LEFT-padded so that every row's answer position is the last one and
        `logits_to_keep` can skip the vocabulary projection everywhere else; position ids are
        given explicitly so padding does not shift them.
        """
        torch = self.torch
        suffixes = [r.tokens[shared:] for r in batch]
        width = max(len(s) for s in suffixes)
        keep = max(len(t) for r in batch for _, t in r.reads)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in suffixes])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes])
        positions = (mask.cumsum(-1) - 1).clamp(min=0) + shared
        kwargs = {}
        if cache is not None:
            kwargs[self._cache_arg] = _expand(cache, len(batch))
            mask = torch.cat([torch.ones(len(batch), shared, dtype=mask.dtype), mask], dim=1)
        with torch.inference_mode():
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                             position_ids=positions.to(self.device), use_cache=cache is not None,
                             logits_to_keep=keep, **kwargs)
            logprobs = torch.log_softmax(out.logits.float(), dim=-1).cpu()
        return [logprobs[i] for i in range(len(batch))]


@contextlib.contextmanager
def _sdpa_gqa(device: str):
    """Let SDPA attend grouped KV heads itself on CPU.

    With an attention mask on CPU, transformers copies the KV heads up to the query heads (3 to
    9 for SmolLM2: the whole prefix cache, per layer, per pass) before SDPA, unless this
    variable, read at each call, says otherwise. SDPA's own GQA gave bit-identical
    log-likelihoods on the 570 5-shot questions, 3% faster and 230 MB less peak memory. Not on
    CUDA: there, with a mask, it falls back to the slow math kernel.
    """
    name = "TRANSFORMERS_SDPA_FORCE_GQA"
    if device != "cpu" or name in os.environ:
        yield
        return
    os.environ[name] = "1"
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _expand(cache, batch_size: int):
    """The batch's own cache object over the shared prefix tensors, without copying them.

    A dynamic cache grows by concatenation, a new tensor each pass, so the prefix tensors are
    only read: the batch gets new cache objects whose tensors are views of the prefix's,
    expanded along the batch dimension (stride 0). The pass's concatenation is then the only
    copy; copying the prefix per batch (and per row) cost time and, with two lanes, memory.
    """
    views = {}
    for t in _tensors(cache):
        many = t.dim() >= 2 and t.shape[0] == 1 and batch_size > 1
        views[id(t)] = t.expand(batch_size, *t.shape[1:]) if many else t
    return copy.deepcopy(cache, views)


def _tensors(obj, seen=None) -> Iterator:
    """Every tensor an object holds through its attributes, lists, tuples and dicts."""
    import torch

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield from _tensors(vars(obj), seen)


def _pick_device(requested: str) -> str:
    import torch

    if requested != "auto":
        kind = requested.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA GPU is visible to torch; use --device cpu.")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("--device mps: Metal is not available; use --device cpu.")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _pick_dtype(requested: str, device: str):
    import torch

    if requested != "auto":
        names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                 "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if requested not in names:
            raise ConfigError(f"--dtype {requested!r}: use auto, float32, float16 or bfloat16.")
        return names[requested]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # bf16 matmuls ran ~7x slower than fp32 on an AVX2 CPU; fp16 is Metal's fast path.
    return torch.float16 if device == "mps" else torch.float32


def _max_length(model, tokenizer) -> int:
    """lm-eval's rule: the model config's context size, else the tokenizer's, else 2048."""
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**9 else 2048
