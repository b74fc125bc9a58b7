#!/usr/bin/env python3
"""Benchmark: what Ray costs and gives under `--data-parallel`, in one run.

1. Scaling, with the fake backend at a fixed latency per question (`fake:demo?latency=S`,
   a sleep: no CPU, so 2 cores do not cap it): one process without Ray, then
   `--data-parallel 1, 2, 4`, each a fresh `mmlu-bench run` starting its own local cluster.
   Printed for each: wall time, start-up (wall less scoring: Ray's cluster and replicas),
   scoring time (the footer's), speed-up over --data-parallel 1, peak RSS of the process tree;
   every run's records must be equal.
2. `--hf`: the real model (`--model demo`, SmolLM2 through transformers), 0-shot `--limit 10`
   (570 questions): one process against `--data-parallel 2`, in which one replica is SIGKILLed
   once `--kill-after` records are in (0: none). Printed: wall times, peak RSS, how many
   records are equal bit for bit, and both against lm-eval 0.4.13's own output
   (tests/fixtures: same predictions, largest |log-likelihood difference|).
3. `--generative`: `--format generative --limit 2` (114 questions; `--gen-fewshot K` shots)
   in one process against `--data-parallel 2`: hf: plans generation batches over the whole
   run in one process and per unit on replicas; printed: texts and extracted letters that
   differ.

    python bench/ray_overhead.py
    python bench/ray_overhead.py --hf --kill-after 100 --generative
    python bench/ray_overhead.py --no-scaling --generative --gen-fewshot 5
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from procstat import MIB, measure  # noqa: E402

from mmlu_bench.records import RECORDS, read  # noqa: E402

REFERENCE = (REPO / "tests" / "fixtures" /
             "lmeval-0.4.13_smollm2-135m-instruct-q4_1_mmlu_0shot_limit10.jsonl")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def run(name: str, out_root: Path, data: str, model: str, *extra: str,
        kill_after: int = 0) -> dict:
    """One `mmlu-bench run` as a measured child; a replica killed once kill_after records
    are in."""
    out = out_root / name
    source = ["--data-dir", data] if data else []  # else the MMLU bundled with mmlu-bench
    cmd = [sys.executable, "-m", "mmlu_bench.cli", "run", "--model", model, *source,
           "--output", str(out), "--no-progress", *extra]
    env = {**os.environ, "RAY_ADDRESS": ""}
    killer = threading.Thread(target=_kill_one, args=(out / RECORDS, kill_after), daemon=True)
    if kill_after:
        killer.start()
    before = load()
    m = measure(cmd, env, out_root / "logs", name, REPO)
    if m.rc:
        raise SystemExit(f"{name} failed (exit {m.rc}); see {m.stderr_log}")
    header, recs, footer = read(out / RECORDS)
    return {"name": name, "wall": m.wall_s, "scoring": footer.wall_seconds,
            "rss_mib": (m.peak_tree_rss or m.peak_process_rss) / MIB, "records": recs,
            "load": f"{before} -> {load()}", "killed": kill_after and not killer.is_alive(),
            "cmd": shlex.join(cmd[3:])}


def _kill_one(path: Path, after: int) -> None:
    while not path.exists() or path.read_bytes().count(b"\n") < 1 + after:
        time.sleep(0.05)
    with path.open() as f:
        where = json.loads(f.readline())["header"]["backend_info"]["replicas"]["where"]
    os.kill(where[0]["pid"], signal.SIGKILL)
    print(f"  killed replica 1 (pid {where[0]['pid']}) after {after} records", flush=True)


def scaling(args, out_root: Path) -> None:
    model = f"fake:demo?latency={args.latency}"
    extra = ("--limit", str(args.limit))
    runs = [run("fake-no-ray", out_root, args.data_dir, model, *extra)]
    runs += [run(f"fake-dp{n}", out_root, args.data_dir, model, *extra, "--data-parallel",
                 str(n)) for n in (1, 2, 4)]
    n_q = len(runs[0]["records"])
    print(f"\nScaling: fake backend, {args.latency * 1000:.0f} ms a question, {n_q} questions "
          f"({n_q * args.latency:.1f} s of latency), each run a fresh process")
    print("| run | wall s | start-up s | scoring s | speed-up | peak RSS MiB | "
          "load before -> after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    base = runs[1]["scoring"]
    for r in runs:
        print(f"| {r['name']} | {r['wall']:.1f} | {r['wall'] - r['scoring']:.1f} | "
              f"{r['scoring']:.2f} | {base / r['scoring']:.2f}x | {r['rss_mib']:.0f} | "
              f"{r['load']} |")
    same = all(r["records"] == runs[0]["records"] for r in runs)
    print(f"Records equal in all {len(runs)} runs: {same}; Ray's cost at one replica: "
          f"{runs[1]['scoring'] - runs[0]['scoring']:+.2f} s of scoring, "
          f"{runs[1]['wall'] - runs[0]['wall']:+.1f} s of wall time")
    for r in runs:
        print(f"  {r['name']}: mmlu-bench {r['cmd']}")


def hf_equality(args, out_root: Path) -> None:
    extra = ("--limit", "10")
    single = run("hf-single", out_root, args.data_dir, "demo", *extra)
    dp = run("hf-dp2", out_root, args.data_dir, "demo", *extra, "--data-parallel", "2",
             kill_after=args.kill_after)
    ref = {f"{r['subject']}/{r['doc_id']}": r for r in map(json.loads, REFERENCE.open())}
    a = {r.qid: r for r in single["records"]}
    b = {r.qid: r for r in dp["records"]}
    equal = sum(a[q] == b.get(q) for q in a)
    killed = f" with replica 1 SIGKILLed after {args.kill_after} records" \
        if args.kill_after else ""
    print(f"\nhf: (--model demo, 0-shot --limit 10): one process against --data-parallel 2"
          f"{killed}")
    print("| run | wall s | scoring s | peak RSS MiB | same preds as lm-eval | max abs LL diff "
          "| load |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r, recs in ((single, a), (dp, b)):
        preds = sum(recs[q].pred == ref[q]["pred"] for q in ref if q in recs)
        worst = max(abs(x - y) for q in ref if q in recs
                    for x, y in zip(recs[q].loglikelihoods, ref[q]["loglikelihoods"]))
        print(f"| {r['name']} | {r['wall']:.1f} | {r['scoring']:.1f} | {r['rss_mib']:.0f} | "
              f"{preds}/{len(ref)} | {worst:.1e} | {r['load']} |")
    print(f"Records equal bit for bit: {equal}/{len(a)} ({len(b)} recorded by --data-parallel 2,"
          f" {len(dp['records'])} lines; killed: {bool(dp['killed'])})")
    for r in (single, dp):
        print(f"  {r['name']}: mmlu-bench {r['cmd']}")


def generative(args, out_root: Path) -> None:
    extra = ("--format", "generative", "--limit", "2", "--num-fewshot", str(args.gen_fewshot))
    single = run("gen-single", out_root, args.data_dir, "demo", *extra)
    dp = run("gen-dp2", out_root, args.data_dir, "demo", *extra, "--data-parallel", "2")
    a = {r.qid: r for r in single["records"]}
    b = {r.qid: r for r in dp["records"]}
    texts = [q for q in a if a[q].response != b[q].response]
    letters = [q for q in a if a[q].answer != b[q].answer]
    print(f"\nhf: --format generative --limit 2 --num-fewshot {args.gen_fewshot} ({len(a)} "
          f"questions): one process "
          f"{single['wall']:.1f} s, --data-parallel 2 {dp['wall']:.1f} s (load {dp['load']})")
    print(f"Generated texts equal: {len(a) - len(texts)}/{len(a)}; extracted letters equal: "
          f"{len(a) - len(letters)}/{len(a)}; accuracy {_acc(a):.4f} vs {_acc(b):.4f}")
    for q in texts:
        print(f"  {q}: {a[q].response!r} vs {b[q].response!r}")


def _acc(recs: dict) -> float:
    return sum(r.correct for r in recs.values()) / len(recs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="MMLU in the original layout (default: the bundled copy)")
    p.add_argument("--latency", type=float, default=0.02, help="fake: seconds a question")
    p.add_argument("--limit", type=int, default=10, help="fake: questions per subject")
    p.add_argument("--hf", action="store_true", help="also the 570-question hf: check")
    p.add_argument("--kill-after", type=int, default=0,
                   help="--hf: SIGKILL replica 1 once this many records are in")
    p.add_argument("--generative", action="store_true", help="also hf: generation")
    p.add_argument("--gen-fewshot", type=int, default=0, help="--generative: shots")
    p.add_argument("--no-scaling", action="store_true", help="leave out the fake: runs")
    p.add_argument("--out", default=str(REPO / "bench/out"))
    args = p.parse_args()
    out_root = Path(args.out) / time.strftime("ray-%Y%m%d-%H%M%S")
    (out_root / "logs").mkdir(parents=True)
    print(f"{os.cpu_count()} CPUs; load average {load()}; output {out_root}")
    if not args.no_scaling:
        scaling(args, out_root)
    if args.hf:
        hf_equality(args, out_root)
    if args.generative:
        generative(args, out_root)


if __name__ == "__main__":
    main()
