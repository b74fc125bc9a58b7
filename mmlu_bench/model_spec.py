"""`--model [backend:]model`: which backend, which model, and the model's short name for folder
names. This module reads the backend table's names (backends/__init__.py); the table imports
nothing from here or from config.py, so neither imports the other."""

from __future__ import annotations

from pathlib import Path

from . import demo
from .backends import BACKENDS
from .errors import ConfigError


def parse_model(spec: str) -> tuple[str, str]:
    """'[backend:]model' -> (backend, model). No prefix: a .gguf file means gguf, else hf.

    `demo` (or hf:demo, gguf:demo) is the demo model; it stays "demo" here, so the default run
    folder reads runs/hf_demo_0shot, and backends.create() swaps in its file."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in BACKENDS:
        if not rest:
            raise ConfigError(f"--model {spec!r} names no model after '{prefix}:'.")
        backend, model = prefix, rest
    elif sep and _looks_like_prefix(prefix) and not Path(spec).expanduser().exists():
        # Without this, `nope:x` would go to the hub as a model id and fail there, obscurely.
        raise ConfigError(f"--model {spec!r}: unknown backend {prefix + ':'!r}; use one of "
                          f"{', '.join(b + ':' for b in BACKENDS)} (see `mmlu-bench backends`).")
    else:
        backend, model = ("gguf" if spec.lower().endswith(".gguf") else "hf"), spec
    if model == demo.NAME and BACKENDS[backend].demo:
        demo.demo_gguf()  # missing: say how to install it now, not after loading the data
    return backend, model


def _looks_like_prefix(prefix: str) -> bool:
    """A word before ':' (not C: of C:\\path, nor ./dir of ./dir:x, nor a hub id's org/)."""
    return len(prefix) > 1 and prefix.replace("-", "").replace("_", "").isalnum()


def model_slug(model: str) -> str:
    """A folder-friendly short name for a model spec (default output folder, listings)."""
    name = Path(model.rstrip("/")).name if "://" not in model else model.split("://", 1)[1]
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name).strip("_") or "model"
