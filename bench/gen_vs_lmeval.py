"""Generative MMLU, mmlu-bench vs lm-eval 0.4.13, same model (hf, fp32 on CPU), same questions.

    python bench/gen_vs_lmeval.py --format generative --subjects anatomy,astronomy --limit 2
    python bench/gen_vs_lmeval.py --format llama --subjects anatomy,astronomy --limit 2

Runs lm-eval's `mmlu_<subject>_generative`, `mmlu_flan_cot_zeroshot_<subject>`, or Meta's
`mmlu_llama_<subject>` / `mmlu_cot_llama_<subject>` (llama3/instruct, with lm-eval's
`--apply_chat_template --fewshot_as_multiturn`, as that task family is meant to run) tasks:
their installed YAML, with the local CSV files as the dataset (flan CoT's `validation` split is
pointed at the local TEST csv, since the local data has dev+test only). Then
`mmlu-bench run --format ...` (`--apply-chat-template --num-fewshot 5` for llama) on the same
questions, and prints: % identical generated text, exact_match agreement where texts agree,
both wall times and the load average around each side (the machine may be shared). lm-eval runs
from its own venv, as bench_vs_lmeval.py makes it (--lmeval-venv, or $LMEVAL_VENV; default
bench/.venv-lmeval, created and filled on first use: lm-eval 0.4.13, torch 2.13.0 CPU,
transformers, gguf); both at --batch-size given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import lmeval_runner as lr  # noqa: E402
from bench_vs_lmeval import default_model  # noqa: E402
from lmeval_task import _dump, _load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# --format -> (folder under lm-eval's tasks/, template, task name, primary filter, split the
# test CSV serves as)
TASKS = {"generative": ("mmlu/generative", "_default_template_yaml", "mmlu_{}_generative",
                        "get_response", "test"),
         "cot": ("mmlu/flan_cot_zeroshot", "_mmlu_flan_cot_zeroshot_template_yaml",
                 "mmlu_flan_cot_zeroshot_{}", "strict-match", "validation"),
         "llama": ("llama3/instruct/mmlu", "_continuation_template_yaml", "mmlu_llama_{}",
                   "strict_match", "test"),
         "llama-cot": ("llama3/instruct/mmlu_cot", "_mmlu_cot_llama_template_yaml",
                       "mmlu_cot_llama_{}", "strict_match", "test")}
# Meta's recipes are chat tasks: lm-eval runs them with these flags, the YAML's own shots (5 for
# mmlu_llama, 0 for mmlu_cot_llama); mmlu-bench with the matching options.
LLAMA = {"llama": 5, "llama-cot": 0}


def task_dir(fmt: str, subjects: list[str], data: Path, dest: Path, venv: Path) -> list[str]:
    """Per-subject YAMLs including the installed template, reading the local CSVs."""
    folder, template, name, _, split = TASKS[fmt]
    src = lr.lmeval_package_dir(venv) / "tasks" / folder
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "mmlu_local_csv.py").write_text((ROOT / "bench/mmlu_local_csv.py").read_text())
    base = _load(src / template)
    base["dataset_path"] = "csv"
    # `!function` is lm-eval's YAML tag: safe_dump cannot write it, so the line is appended.
    (dest / template).write_text(
        _dump(base) + "process_docs: !function mmlu_local_csv.process_docs\n")
    names = []
    for s in subjects:
        files = {split: str(data / "test" / f"{s}_test.csv"),
                 "dev": str(data / "dev" / f"{s}_dev.csv")}
        cfg = {"include": template, "task": name.format(s), "dataset_name": s,
               "description": f"The following are multiple choice questions (with answers) "
                              f"about {s.replace('_', ' ')}.\n\n"}
        if fmt in LLAMA:  # the installed subject file: its alias, tag, (empty) description
            cfg = {**_load(src / f"mmlu_{s}.yaml"), "include": template}
        cfg["dataset_kwargs"] = {"data_files": files,
                                 "column_names": ["question", "A", "B", "C", "D", "answer"],
                                 "na_filter": False}
        (dest / f"{name.format(s)}.yaml").write_text(_dump(cfg))
        names.append(name.format(s))
    return names


def run_lmeval(args, names: list[str], tdir: Path, out: Path) -> float:
    cmd = [str(args.lmeval_venv / "bin/lm_eval"), "run", "--model", "hf", "--model_args",
           lr.hf_model_args(args.model), "--tasks", ",".join(names), "--include_path",
           str(tdir), "--batch_size", str(args.batch_size), "--limit", str(args.limit),
           "--output_path", str(out), "--log_samples", "--device", "cpu"]
    if args.format in LLAMA:
        cmd += ["--apply_chat_template", "--fewshot_as_multiturn"]
    start, load = time.perf_counter(), os.getloadavg()[0]
    out.mkdir(parents=True, exist_ok=True)
    # A datasets cache kept across runs (warm from the second run on): a cold one converts
    # every subject's CSVs inside the timed run, which is no part of generating.
    with open(out / "stderr.txt", "wb") as log:
        subprocess.run(cmd, check=True, env=lr.lmeval_env(args.out / "datasets-cache"),
                       stdout=subprocess.DEVNULL, stderr=log)
    print(f"lm-eval: load average {load:.2f} at its start, {os.getloadavg()[0]:.2f} at its end",
          flush=True)
    return time.perf_counter() - start


def lmeval_generation_seconds(out: Path) -> float | None:
    """The elapsed time of lm-eval's last `Running generate_until requests` progress bar."""
    text = (out / "stderr.txt").read_text(errors="replace").replace("\r", "\n")
    times = re.findall(r"Running generate_until requests: 100%.*?\[(?:(\d+):)?(\d+):(\d+)<", text)
    if not times:
        return None
    h, m, sec = times[-1]
    return int(h or 0) * 3600 + int(m) * 60 + int(sec)


def run_ours(args, out: Path) -> float:
    cmd = [sys.executable, "-c", "import sys;from mmlu_bench.cli import main;sys.exit(main())",
           "run", "--model", f"hf:{args.model}", "--format", args.format, "--subjects",
           args.subjects, "--limit", str(args.limit), "--batch-size", str(args.batch_size),
           "--data-dir", str(args.data), "--output", str(out), "--no-progress", "--device", "cpu"]
    if args.format in LLAMA:
        cmd += ["--apply-chat-template", "--num-fewshot", str(LLAMA[args.format])]
    start, load = time.perf_counter(), os.getloadavg()[0]
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   capture_output=True)
    print(f"mmlu-bench: load average {load:.2f} at its start, {os.getloadavg()[0]:.2f} at its "
          "end", flush=True)
    return time.perf_counter() - start


def lmeval_samples(out: Path, fmt: str, subjects: list[str]) -> dict:
    name, metric = TASKS[fmt][2], TASKS[fmt][3]
    found = {}
    for s in subjects:
        for path in out.rglob(f"samples_{name.format(s)}_*.jsonl"):
            for line in path.read_text().splitlines():
                d = json.loads(line)
                if d["filter"] == metric:
                    found[f"{s}/{d['doc_id']}"] = (d["resps"][0][0], d["exact_match"])
    return found


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--format", choices=list(TASKS), default="generative")
    p.add_argument("--subjects", default="anatomy,astronomy")
    p.add_argument("--limit", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--model", type=Path, default=default_model())
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/mmlu"))
    p.add_argument("--out", type=Path, default=Path("/tmp/gen_bench"))
    p.add_argument("--lmeval-venv", type=Path, default=Path(os.environ.get(
        "LMEVAL_VENV", ROOT / "bench" / ".venv-lmeval")))
    p.add_argument("--reuse-lmeval", type=Path, metavar="RUN",
                   help="an earlier run folder of this script: compare with its lm-eval side "
                        "instead of running lm-eval again (same format, subjects, limit)")
    p.add_argument("--lmeval-only", action="store_true",
                   help="run lm-eval's side only (the slow one), for a later --reuse-lmeval")
    args = p.parse_args()
    subjects = args.subjects.split(",")
    out = args.out / f"{args.format}_{int(time.time())}"
    if args.reuse_lmeval:
        (out / "lmeval").parent.mkdir(parents=True, exist_ok=True)
        (out / "lmeval").symlink_to((args.reuse_lmeval / "lmeval").resolve())
        t_lm = json.loads((args.reuse_lmeval / "lmeval_wall.json").read_text())["seconds"]
    else:
        lr.ensure_lmeval_venv(args.lmeval_venv)
        names = task_dir(args.format, subjects, args.data, out / "tasks", args.lmeval_venv)
        t_lm = run_lmeval(args, names, out / "tasks", out / "lmeval")
        (out / "lmeval_wall.json").write_text(json.dumps({"seconds": t_lm}))
        if args.lmeval_only:
            print(f"lm-eval's side in {out} ({t_lm:.1f} s); compare with --reuse-lmeval {out}")
            return 0
    t_us = run_ours(args, out / "ours")
    theirs = lmeval_samples(out / "lmeval", args.format, subjects)
    ours = {}
    for line in (out / "ours/records.jsonl").read_text().splitlines()[1:-1]:
        r = json.loads(line)
        ours[r["qid"]] = (r["response"], float(r["correct"]))
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    same = [q for q in ours if ours[q][0] == theirs[q][0]]
    agree = sum(ours[q][1] == theirs[q][1] for q in same)
    print(f"{args.format}: {len(ours)} questions; identical text {len(same)}/{len(ours)} "
          f"({len(same) / len(ours):.1%}); exact_match agrees on {agree}/{len(same)} of those; "
          f"lm-eval {t_lm:.1f} s, mmlu-bench {t_us:.1f} s (x{t_lm / t_us:.2f}, wall incl. load)")
    footer = json.loads((out / "ours/records.jsonl").read_text().splitlines()[-1])["footer"]
    total = lr.read_results(out / "lmeval").get("total_evaluation_time_seconds")
    gen = lmeval_generation_seconds(out / "lmeval")
    print(f"  generation alone: mmlu-bench {footer['wall_seconds']} s, lm-eval {gen} s "
          f"(its generate_until progress bar)"
          + (f" (x{gen / footer['wall_seconds']:.2f})" if gen else "")
          + f"; lm-eval's total_evaluation_time_seconds {total}")
    for q in sorted(set(ours) - set(same)):
        print(f"  {q}: lm-eval {theirs[q][0][:80]!r}\n  {'':{len(q)}}  ours    {ours[q][0][:80]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
