"""A batch's KV cache over a shared prefix's tensors, without copying them (hf: scoring and
generation both read a subject's prefix cache this way)."""

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
