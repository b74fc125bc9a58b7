"""Backends, picked from a plain table. Imports are lazy: `import mmlu_bench` never loads torch."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import RunConfig
    from .base import Backend

# prefix -> (module, class, what it needs, how to install)
BACKENDS: dict[str, tuple[str, str, str, str]] = {
    "hf": ("mmlu_bench.backends.hf", "HFBackend", "torch, transformers (gguf for .gguf files)",
           "pip install 'mmlu-bench[hf]'"),
    "gguf": ("mmlu_bench.backends.llamacpp", "LlamaCppBackend", "llama-cpp-python",
             "pip install 'mmlu-bench[gguf]'"),
    "mlx": ("mmlu_bench.backends.mlxlm", "MLXBackend", "mlx, mlx-lm",
            "pip install 'mmlu-bench[mlx]' (on Linux also 'mlx[cpu]')"),
    "openai": ("mmlu_bench.backends.openai_compat", "OpenAIBackend",
               "an OpenAI-compatible server that returns logprobs", "nothing to install"),
    "ollama": ("mmlu_bench.backends.ollama", "OllamaBackend", "Ollama >= 0.12.11 running",
               "nothing to install"),
    "fake": ("mmlu_bench.backends.fake", "FakeBackend", "nothing (dry runs and tests)",
             "nothing to install"),
}
# Python packages whose presence `mmlu-bench backends` checks.
REQUIRES: dict[str, tuple[str, ...]] = {
    "hf": ("torch", "transformers"), "gguf": ("llama_cpp",), "mlx": ("mlx", "mlx_lm"),
    "openai": (), "ollama": (), "fake": (),
}


def parse_model(spec: str) -> tuple[str, str]:
    """'[backend:]model' -> (backend, model). No prefix: a .gguf file means gguf, else hf."""
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in BACKENDS:
        if not rest:
            raise ConfigError(f"--model {spec!r} names no model after '{prefix}:'.")
        return prefix, rest
    if spec.lower().endswith(".gguf"):
        return "gguf", spec
    return "hf", spec


def available(name: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in REQUIRES[name])


def create(config: RunConfig) -> Backend:
    module, cls, needs, install = BACKENDS[config.backend]
    if not available(config.backend):
        raise ConfigError(f"the {config.backend}: backend needs {needs}: {install}")
    return getattr(importlib.import_module(module), cls)(config)


def model_slug(model: str) -> str:
    """A folder-friendly short name for a model spec (default output folder)."""
    name = Path(model.rstrip("/")).name if "://" not in model else model.split("://", 1)[1]
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name).strip("_") or "model"
