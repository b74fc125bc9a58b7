"""lm-eval 0.4.13 as a child process: its own venv, its command line, its outputs.

- `ensure_lmeval_venv` creates and fills a venv for lm-eval (never a dependency of mmlu-bench);
- `LlamaServer` runs llama-cpp-python's server from that venv for lm-eval's gguf model;
- `command` builds `lm_eval run ...` over a generated --include_path task folder
  (lmeval_task.py for mmlu, lmeval_task_pro.py for leaderboard_mmlu_pro);
- `read_results` / `read_samples` read its results_*.json and samples_*.jsonl
  (--log_samples) into per-question dicts (see agreement.py).
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from agreement import argmax, sha256
from procstat import TreeSampler, stop_measured

LMEVAL_VERSION = "0.4.13"
TORCH_VERSION = "2.13.0"  # this exact pin resolves to the CPU build; a looser spec can pull CUDA
LMEVAL_PACKAGES = [f"lm-eval=={LMEVAL_VERSION}", f"torch=={TORCH_VERSION}", "transformers",
                   "gguf", "accelerate", "sentencepiece"]
SERVER_PACKAGES = ["sse-starlette", "starlette-context", "pydantic-settings", "fastapi",
                   "uvicorn"]
CHECK_MODULES = {"lm_eval": "lm_eval", "torch": "torch", "transformers": "transformers",
                 "gguf": "gguf", "accelerate": "accelerate", "sentencepiece": "sentencepiece"}


# ---------------------------------------------------------------- the venv

def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_versions(py: Path, modules: dict[str, str]) -> dict[str, str | None]:
    code = ("import json, importlib.metadata as m\nout = {}\n"
            f"for dist in {list(modules)!r}:\n"
            "    try: out[dist] = m.version(dist)\n"
            "    except m.PackageNotFoundError: out[dist] = None\n"
            "print(json.dumps(out))")
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def _pip(py: Path, packages: list[str]) -> None:
    cmd = [str(py), "-m", "pip", "install", *packages]
    print("  $ " + " ".join(cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"pip install failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def ensure_lmeval_venv(venv: Path) -> dict[str, str | None]:
    """Create the venv if needed and install what is missing or at another version."""
    py = venv_python(venv)
    if not py.exists():
        print(f"Creating the lm-eval venv {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    versions = _venv_versions(py, CHECK_MODULES)
    wrong = [d for d, v in versions.items() if v is None
             or (d == "lm_eval" and v != LMEVAL_VERSION)
             or (d == "torch" and v.split("+")[0] != TORCH_VERSION)]
    if wrong:
        print(f"Installing into {venv} (missing or other version: {', '.join(wrong)}) ...",
              flush=True)
        _pip(py, LMEVAL_PACKAGES)
        versions = _venv_versions(py, CHECK_MODULES)
    return versions


def lmeval_package_dir(venv: Path) -> Path:
    """The installed lm_eval package folder (its tasks/ are what the task folders derive from)."""
    where = "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"
    return Path(subprocess.run([str(venv_python(venv)), "-c", where], capture_output=True,
                               text=True, check=True).stdout.strip())


def ensure_llama_server(venv: Path, wheel: str | None) -> str | None:
    """llama-cpp-python with its server extras in the lm-eval venv; None when it is ready,
    else why lm-eval's gguf run must be skipped."""
    py = venv_python(venv)
    probe = "import llama_cpp, llama_cpp.server.app, uvicorn, sse_starlette, starlette_context"
    if subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return None
    wheels = sorted(glob.glob(wheel), key=os.path.getmtime) if wheel else []
    if not wheels:
        return (f"llama-cpp-python is not in {venv} and no wheel matches {wheel!r} "
                "(pass --llama-wheel)")
    print(f"Installing llama-cpp-python ({Path(wheels[-1]).name}) and its server into {venv} ...",
          flush=True)
    _pip(py, [wheels[-1], *SERVER_PACKAGES])
    res = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    if res.returncode:
        return f"llama_cpp.server does not import in {venv}: {res.stderr.strip()[-300:]}"
    return None


# ---------------------------------------------------------------- the llama.cpp server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` from the lm-eval venv, for lm-eval's gguf model."""

    def __init__(self, py: Path, model: Path, threads: int, ctx: int, logs: Path,
                 cwd: Path) -> None:
        self.port = free_port()
        self.cmd = [str(py), "-m", "llama_cpp.server", "--model", str(model), "--host",
                    "127.0.0.1", "--port", str(self.port), "--n_threads", str(threads),
                    "--n_threads_batch", str(threads), "--n_ctx", str(ctx)]
        self.log = logs / "llama-server.log"
        self.url = f"http://127.0.0.1:{self.port}"
        print(f"\n[{time.strftime('%H:%M:%S')}] starting the llama.cpp server:\n"
              f"  $ {' '.join(self.cmd)}\n  (log: {self.log})", flush=True)
        start = time.perf_counter()
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self._logf, stderr=subprocess.STDOUT,
                                     cwd=cwd)
        self.sampler = TreeSampler([self.proc.pid])
        self.sampler.start()
        self._wait_ready(deadline=time.monotonic() + 300)
        self.startup_s = time.perf_counter() - start
        print(f"  ready in {self.startup_s:.1f} s at {self.url}", flush=True)

    def _wait_ready(self, deadline: float) -> None:
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with {self.proc.returncode}; "
                                   f"see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/v1/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the llama.cpp server did not answer in 300 s; see {self.log}")
            time.sleep(0.2)

    def stop(self) -> tuple[int | None, int]:
        """(sampled peak RSS, kernel peak RSS) of the server over its whole life."""
        peaks = stop_measured(self.proc, self.sampler)
        self._logf.close()
        return peaks


# ---------------------------------------------------------------- running lm-eval

def lmeval_env(cache: Path) -> dict:
    """Offline (nothing goes to the hub) with its own datasets cache."""
    env = dict(os.environ)
    env.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"})
    env.pop("VIRTUAL_ENV", None)
    return env


def hf_model_args(model: Path) -> str:
    """--model_args for lm-eval's hf model: a GGUF is dequantized by transformers, in fp32."""
    return (f"pretrained={model.parent},gguf_file={model.name},dtype=float32"
            if model.is_file() else f"pretrained={model},dtype=float32")


def command(venv: Path, model_type: str, model_args: str, task: str, task_dir: Path,
            num_fewshot: int, out: Path, limit: int, extra: list) -> list:
    cmd = [venv / "bin" / "lm_eval", "run", "--model", model_type, "--model_args", model_args,
           "--tasks", task, "--include_path", task_dir, "--num_fewshot", str(num_fewshot),
           *extra, "--output_path", out, "--log_samples"]
    return cmd + ["--limit", str(limit)] if limit else cmd


def lmeval_table(stdout: str) -> str:
    """lm-eval's own printout: the run line and its tables."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\S+ \(.*\),? gen_kwargs", line) or line.startswith("|"):
            return "\n".join(lines[i:]).strip() + "\n"
    return stdout


# ---------------------------------------------------------------- reading its output

def read_results(out_dir: Path) -> dict:
    results = sorted(out_dir.rglob("results_*.json"), key=os.path.getmtime)
    if not results:
        raise RuntimeError(f"no lm-eval results_*.json under {out_dir}")
    return json.loads(results[-1].read_text())


def _question(qid, s: dict) -> tuple[dict, list]:
    """One samples line -> (per-question dict, [(context, continuation)] per choice)."""
    args = [(a["arg_0"], a["arg_1"]) for a in s["arguments"].values()]
    assert len({c for c, _ in args}) == 1, f"{qid}: lm-eval used different contexts per choice"
    lls = [float(r[0]) for r in s["filtered_resps"]]
    assert len(lls) == len(args), f"{qid}: {len(lls)} responses to {len(args)} requests"
    return ({"id": qid, "lls": lls, "pred": argmax(lls), "gold": _gold(qid, s["target"], args),
             "prompt_sha256": sha256(args[0][0])}, args)


def _gold(qid, target, args: list) -> int:
    """The gold choice's index. lm-eval logs doc_to_target's value: an index for `mmlu`, the
    answer letter for `leaderboard_mmlu_pro` (then its index among the choices, as lm-eval
    finds it; each continuation is the choice after the target delimiter " ")."""
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    choices = [continuation.strip() for _, continuation in args]
    assert target in choices, f"{qid}: target {target!r} is none of the choices {choices}"
    return choices.index(target)


def read_samples(out_dir: Path, pattern: re.Pattern, make_id) -> tuple[list, list]:
    """([per-question dict], [(id, [(context, continuation)] per choice)]) from the samples
    files whose names match `pattern`; make_id(name match, doc_id) names each question."""
    questions, requests = [], []
    for path in sorted(out_dir.rglob("samples_*.jsonl")):
        m = pattern.search(path.name)
        if not m:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            s = json.loads(line)
            q, args = _question(make_id(m, s["doc_id"]), s)
            questions.append(q)
            requests.append((q["id"], args))
    return questions, requests
