"""Greedy generation for the hf: backend, as lm-eval 0.4.13's HFLM.generate_until gives it.

lm-eval sorts a task's prompts longest first, left-pads each batch, runs `model.generate`
(greedy) until every row has produced a stop string or max_gen_toks tokens, decodes each row
with special tokens skipped and cuts it at the first stop string (the format's `until` plus the
tokenizer's decoded EOS). Here the same, with two savings that change no text:
- a batch's shared token prefix (the description, the few-shot examples) runs once; the
  batch's cache starts as views of it (kv_cache.expand);
- a row leaves the batch as soon as it stops (its end-of-text token, a stop string in its
  decoded text, or max_tokens): its cache rows are dropped and no more steps run for it.
Greedy choices are argmax over float logits; a padded batch can tip a near-tie the other way
than an unpadded one (or than lm-eval's differently-composed batches): expected, and measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..schema import GenerateRequest, Generation
from .kv_cache import expand
from .textgen import cut_at_stop, stops_with_eos

# Rows per batch for --batch-size auto: the token budget over (prompt + max_tokens) per row, as
# for scoring, but at least lm-eval's usual 8 rows while 8 rows' KV cache fits in KV_BUDGET x the
# budget. A decode step runs one token per row, so the CPU scoring budget (1,024 tokens) alone
# left batches of one to three rows; 8 rows also batch as lm-eval's `--batch_size 8` does.
MIN_AUTO_ROWS, MAX_AUTO_ROWS = 8, 64
KV_BUDGET = 8


@dataclass
class _Row:
    request: GenerateRequest
    tokens: list[int]
    stops: tuple[str, ...]
    out: list[int] = field(default_factory=list)
    finish: str = ""


def generate_groups(backend, groups: Iterable[tuple[Sequence[GenerateRequest], frozenset[str]]]
                    ) -> Iterator[list[Generation]]:
    """Every unit's requests pooled into one plan (`plan`); the batches holding an unrecorded
    question run, each from its own shared prefix."""
    for batch, skip in plan(backend, groups):
        shared = _shared(backend, batch)
        cache = backend._prefix_cache(tuple(batch[0].tokens[:shared])) if shared else None
        _run(backend, batch, shared, cache)
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
    rows = [prompt_row(backend, r) for requests, _ in groups for r in requests]
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


def _run(backend, batch: list[_Row], shared: int, prefix_cache) -> None:
    """Greedy decoding of a batch; each row keeps its tokens in `out` and why it ended."""
    torch = backend.torch
    eos_ids = _eos_ids(backend)
    ids, mask, positions = _first_inputs(backend, batch, shared)
    cache = expand(prefix_cache, len(batch)) if prefix_cache is not None else None
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


def _first_inputs(backend, batch: list[_Row], shared: int) -> tuple:
    """Each row's tokens after the shared prefix, LEFT-padded so every row's next token comes
    at the last position; position ids count real tokens only, so padding shifts none; the
    mask covers the prefix too."""
    torch = backend.torch
    suffixes = [r.tokens[shared:] for r in batch]
    width = max(len(s) for s in suffixes)
    pad = backend.tokenizer.pad_token_id or 0
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in suffixes])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes])
    positions = (mask.cumsum(-1) - 1).clamp(min=0) + shared
    mask = torch.cat([torch.ones(len(batch), shared, dtype=mask.dtype), mask], dim=1)
    return ids, mask, positions


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
