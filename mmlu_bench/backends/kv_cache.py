"""A batch's KV cache over a shared prefix's tensors, without copying them (hf: scoring and
generation both read a subject's prefix cache this way), or over several prefixes, one per row
(`stack`: generation's rows of different units)."""

from __future__ import annotations

import copy
from collections.abc import Iterator


def expand(cache, batch_size: int):
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


def stack(caches: list, width: int):
    """One batch cache from each row's own prefix cache (None: a row with none), all of one
    structure: each key and value tensor ([1, heads, positions, dim]) left-padded with zeros to
    `width` positions, the rows stacked along the batch dimension. The caller masks the
    padding and gives each row's positions from its own prefix length."""
    import torch

    template = next(c for c in caches if c is not None)
    own = [list(_tensors(c)) if c is not None else None for c in caches]
    views = {}
    for j, t in enumerate(_tensors(template)):
        if t.dim() != 4:
            continue
        parts = [row[j] if row is not None else t[:, :, :0] for row in own]
        views[id(t)] = torch.cat([torch.nn.functional.pad(p, (0, 0, width - p.shape[2], 0))
                                  for p in parts], dim=0)
    return copy.deepcopy(template, views)


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
