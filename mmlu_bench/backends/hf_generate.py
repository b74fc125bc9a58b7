"""Greedy generation for the hf: backend, as lm-eval 0.4.13's HFLM.generate_until gives it.

lm-eval sorts a task's prompts longest first, left-pads each batch, runs `model.generate`
(greedy) until every row has produced a stop string or max_gen_toks tokens, decodes each row
with special tokens skipped and cuts it at the first stop string (the format's `until` plus the
tokenizer's decoded EOS). Here the same, with savings that change no text:
- a batch's shared token prefix (the description, the few-shot examples) runs once; the
  batch's cache starts as views of it (kv_cache.expand);
- a unit's shared prefix (its few-shot examples: most of a 5-shot chat prompt) runs once for
  all the unit's rows, whichever batches lm-eval's order puts them in: a batch of rows from
  several units starts from their units' prefix caches, each left-padded to the longest
  (kv_cache.stack; the padding masked, positions counted from each row's own start);
- a row leaves the batch as soon as it stops (its end-of-text token, a stop string in its
  decoded text, or max_tokens): its cache rows are dropped and no more steps run for it.
Greedy choices are argmax over float logits; a padded batch can tip a near-tie the other way
than an unpadded one (or than lm-eval's differently-composed batches): expected, and measured.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..schema import GenerateRequest, Generation
from .kv_cache import expand, stack
from .textgen import cut_at_stop, stops_with_eos

# Rows per batch for --batch-size auto: the token budget over (prompt + max_tokens) per row, as
# for scoring, but at least lm-eval's usual 8 rows while 8 rows' KV cache fits in KV_BUDGET x the
# budget. A decode step runs one token per row, so the CPU scoring budget (1,024 tokens) alone
# left batches of one to three rows; 8 rows also batch as lm-eval's `--batch_size 8` does.
MIN_AUTO_ROWS, MAX_AUTO_ROWS = 8, 64
KV_BUDGET = 8
# Units' prefix caches kept at once: lm-eval's longest-first order spreads a unit's rows over
# the whole run; a cache evicted is computed again when its unit comes back.
UNIT_CACHES = 8
# A unit's prefix runs on its own only for units of at least this many rows: a one-row pass
# costs (measured on CPU) up to ~2.5x more per token than the batched one it replaces, so with
# --limit 2 sharing it between two rows would lose time; over a subject's hundreds of rows it
# saves almost the whole few-shot prefill.
MIN_UNIT_ROWS = 4


@dataclass
class _Row:
    request: GenerateRequest
    tokens: list[int]
    stops: tuple[str, ...]
    out: list[int] = field(default_factory=list)
    finish: str = ""
    unit: int = 0  # the group (unit) it came from
    prefix: int = 0  # tokens all its unit's rows start with (0: none worth sharing)


def generate_groups(backend, groups: Iterable[tuple[Sequence[GenerateRequest], frozenset[str]]]
                    ) -> Iterator[list[Generation]]:
    """Every unit's requests pooled into one plan (`plan`); the batches holding an unrecorded
    question run, each from its shared prefix, or its units' prefixes where those are longer;
    in the backend's lanes once other work takes cores (hf.in_lanes)."""
    units = _UnitCaches(backend)

    def setup(batch: list[_Row]):  # (each row's tokens in the cache, the cache), in a lane
        def start():
            shared = _shared(backend, batch)
            if shared < max(r.prefix for r in batch):
                return [r.prefix for r in batch], units.stacked(batch)
            prefix = backend._prefix_cache(tuple(batch[0].tokens[:shared])) if shared else None
            return [shared] * len(batch), \
                expand(prefix, len(batch)) if prefix is not None else None
        return start

    planned = plan(backend, groups)
    skip = planned[0][1] if planned else frozenset()
    work = ((i, setup(batch), [batch]) for i, (batch, _) in enumerate(planned))
    for _, batch, _ in backend.in_lanes(work, lambda b, state: _run(backend, b, *state),
                                        always=False):
        yield [_generation(backend, r) for r in batch if r.request.qid not in skip]


def plan(backend, groups) -> list[tuple[list[_Row], frozenset[str]]]:
    """lm-eval's batches: all requests of the run sorted as its Collator sorts them (longest
    prompt first, then by text) and cut in batch_size slices, so a batch holds the rows
    lm-eval's holds (padding, hence greedy near-ties, as in lm-eval) and small units share
    batches. The order depends on every request, recorded or not (the runner passes recorded
    units too): a resumed run computes each question in the same batch, bit for bit. Only
    batches with an unrecorded question are kept, each with the recorded qids."""
    groups = list(groups)
    skip = frozenset().union(*(s for _, s in groups))
    rows, stack = [], _stackable(backend)
    for unit, (requests, _) in enumerate(groups):
        mine = [prompt_row(backend, r) for r in requests]
        prefix = _shared(backend, mine) if stack and len(mine) >= MIN_UNIT_ROWS else 0
        for r in mine:
            r.unit, r.prefix = unit, prefix
        rows += mine
    rows.sort(key=lambda r: (-len(r.tokens), r.request.context))
    return [(batch, skip) for batch in _batches(backend, rows)
            if not all(r.request.qid in skip for r in batch)]


def prompt_row(backend, r: GenerateRequest) -> _Row:
    """The request as lm-eval's tokens (left-truncated for max_tokens) with its stop strings;
    `backend` gives tokenizer, encode and max_length (hf:, vllm:)."""
    tok = backend.tokenizer
    text = r.context
    if r.messages is not None and getattr(tok, "chat_template", None):
        # A chat format: the model's own template renders the turns, generation prompt on.
        text = tok.apply_chat_template(list(r.messages), tokenize=False,
                                       add_generation_prompt=True)
    tokens = backend.encode(text)
    # lm-eval's left truncation: room for max_tokens new tokens within the model's length.
    tokens = tokens[-(backend.max_length - r.max_tokens):]
    eos = tok.decode([tok.eos_token_id], skip_special_tokens=False) \
        if tok.eos_token_id is not None else None
    return _Row(r, tokens, stops_with_eos(r.until, eos))


def _shared(backend, rows: list[_Row]) -> int:
    """Tokens every row starts with, leaving each row at least one of its own."""
    from .tokens import MIN_SHARED_PREFIX

    if len(rows) < 2 or not backend.prefix_sharing:
        return 0  # a lone row saves nothing by a separate prefix pass
    first, n = rows[0].tokens, min(len(r.tokens) for r in rows) - 1
    for r in rows[1:]:
        n = min(n, next((i for i, (a, b) in enumerate(zip(first, r.tokens)) if a != b), n))
    return n if n >= MIN_SHARED_PREFIX else 0


def _batches(backend, rows: list[_Row]) -> Iterator[list[_Row]]:
    i = 0
    while i < len(rows):
        size = backend.batch_size
        if size is None:  # the longest row of a batch comes first
            per_row = len(rows[i].tokens) + rows[i].request.max_tokens
            fits = backend.token_budget // per_row
            size = max(1, min(MAX_AUTO_ROWS, max(
                fits, min(MIN_AUTO_ROWS, KV_BUDGET * backend.token_budget // per_row))))
        yield rows[i:i + size]
        i += size


class _UnitCaches:
    """Each unit's prefix cache, computed on first use; after a batch, the UNIT_CACHES latest
    kept (a batch may need more at once)."""

    def __init__(self, backend) -> None:
        self.backend, self.caches = backend, {}
        self.lock = threading.Lock()  # two lanes may start batches at once

    def stacked(self, batch: list[_Row]):
        """One cache for the batch from its rows' unit prefix caches, left-padded to the
        longest (masked in _first_inputs); a row without a prefix is all padding there."""
        with self.lock:
            cache = stack([self.get(r) if r.prefix else None for r in batch],
                          max(r.prefix for r in batch))
            self.trim()  # stack copied what the batch needs
        return cache

    def get(self, row: _Row):
        cache = self.caches.pop(row.unit, None)
        if cache is None:
            cache = self.backend._prefix_cache(tuple(row.tokens[:row.prefix]))
        self.caches[row.unit] = cache  # now the latest
        return cache

    def trim(self) -> None:
        while len(self.caches) > UNIT_CACHES:
            del self.caches[next(iter(self.caches))]


def _stackable(backend) -> bool:
    """Whether units' prefix caches can be stacked into one batch: prefix sharing is on and the
    model's cache is transformers' plain dynamic one (its tensors are all it holds per layer)."""
    from transformers import DynamicCache

    config = getattr(getattr(backend, "model", None), "config", None)
    if not backend.prefix_sharing or config is None:
        return False
    try:
        layers = DynamicCache(config=config).layers
    except TypeError:  # an older transformers: no per-layer types to check
        return False
    return all(type(layer).__name__ == "DynamicLayer" for layer in layers)


def _run(backend, batch: list[_Row], starts: list[int], cache) -> None:
    """Greedy decoding of a batch from `cache` (each row's first `starts` tokens); each row
    keeps its tokens in `out` and why it ended."""
    torch = backend.torch
    eos_ids = _eos_ids(backend)
    ids, mask, positions = _first_inputs(backend, batch, starts)
    active = list(range(len(batch)))
    with torch.inference_mode():
        while active:
            kwargs = {backend._cache_arg: cache} if cache is not None else {}
            out = backend.model(input_ids=ids.to(backend.device),
                                attention_mask=mask.to(backend.device),
                                position_ids=positions.to(backend.device), use_cache=True,
                                logits_to_keep=1, **kwargs)
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            nxt = out.logits[:, -1, :].float().argmax(-1).tolist()
            keep = [j for j, (i, t) in enumerate(zip(active, nxt, strict=True))
                    if not _step(backend, batch[i], t, eos_ids)]
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=backend.device)
                _select(cache, index)
                mask, positions = mask[keep], positions[keep]
                nxt = [nxt[j] for j in keep]
                active = [active[j] for j in keep]
            ids = torch.tensor([[t] for t in nxt])
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=mask.dtype)], dim=1)
            positions = positions[:, -1:] + 1


def _first_inputs(backend, batch: list[_Row], starts: list[int]) -> tuple:
    """Each row's tokens after its cached prefix (its first `starts` tokens), LEFT-padded so
    every row's next token comes at the last position; position ids count real tokens only,
    from the row's own start, so padding shifts none; the mask covers the cache too, its
    left padding (a shorter prefix in a stacked cache) masked out."""
    torch = backend.torch
    suffixes = [r.tokens[s:] for r, s in zip(batch, starts, strict=True)]
    width, cached = max(len(s) for s in suffixes), max(starts)
    pad = backend.tokenizer.pad_token_id or 0
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes])
    positions = (mask.cumsum(-1) - 1).clamp(min=0) + torch.tensor(starts)[:, None]
    prefix = torch.tensor([[0] * (cached - s) + [1] * s for s in starts], dtype=mask.dtype)
    return ids, torch.cat([prefix, mask], dim=1), positions


def _step(backend, row: _Row, token: int, eos_ids: set[int]) -> bool:
    """Add a generated token; True when the row is finished."""
    if token in eos_ids:
        row.finish = "stop"
        return True
    row.out.append(token)
    text = backend.tokenizer.decode(row.out, skip_special_tokens=False)
    if cut_at_stop(text, row.stops)[1]:
        row.finish = "stop"
    elif len(row.out) >= row.request.max_tokens:
        row.finish = "length"
    return bool(row.finish)


def _generation(backend, row: _Row) -> Generation:
    # lm-eval decodes with skip_special_tokens=True, then cuts at the stop strings.
    text = backend.tokenizer.decode(row.out, skip_special_tokens=True)
    text, _ = cut_at_stop(text, row.stops)
    return Generation(row.request.qid, text, len(row.tokens) + len(row.out), row.finish)


def _eos_ids(backend) -> set[int]:
    """The tokens `generate` stops a row at: the generation config's EOS ids and the
    tokenizer's."""
    ids = getattr(getattr(backend.model, "generation_config", None), "eos_token_id", None)
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if backend.tokenizer.eos_token_id is not None:
        ids.add(backend.tokenizer.eos_token_id)
    return ids


def _select(cache, index) -> None:
    """Keep only the batch rows in `index` in a transformers cache."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(index)
        return
    for layer in cache.layers:
        layer.batch_select_indices(index)
