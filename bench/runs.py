"""One measured run of each tool (procstat.measure), read back into a ToolResult and the
per-question dicts that agreement.compare takes."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import lmeval_runner as lr
from agreement import degenerate
from bench_report import ToolResult, fill_rates
from procstat import MIB, measure

REPO = Path(__file__).resolve().parent.parent


def _result(m, label, tool, backend, out: Path) -> ToolResult:
    r = ToolResult(label, tool, backend, "ok" if m.rc == 0 else "failed", m.cmd,
                   round(m.wall_s, 2), output_dir=str(out))
    r.peak_tree_rss_mib = round(m.peak_tree_rss / MIB, 1) if m.peak_tree_rss else None
    r.peak_process_rss_mib = round(m.peak_process_rss / MIB, 1)
    if r.status != "ok":
        r.note = f"exit status {m.rc}; see {m.stderr_log}"
    return r


def _lmeval_cmd(args, task, run_dir, task_dir, model_type, limit, server):
    if model_type == "hf":
        margs = lr.hf_model_args(Path(args.model))
        extra = ["--batch_size", str(args.batch_size), "--device", args.device]
    else:
        margs, extra = f"base_url={server.url}", []
    out = run_dir / f"lmeval-{model_type}"
    extra += chat_args(args, "lm-eval")
    return lr.command(Path(args.lmeval_venv), model_type, margs, task.lm_task, task_dir,
                      args.num_fewshot, out, limit, extra), out


def run_lmeval(args, task, run_dir: Path, task_dir: Path, model_type: str, counter,
               limit: int, server=None) -> tuple[ToolResult, list, list]:
    """(result, per-question dicts, [(id, request pairs)]) of one lm-eval run."""
    cmd, out = _lmeval_cmd(args, task, run_dir, task_dir, model_type, limit, server)
    cache = (run_dir / "hf-datasets-cache") if args.lmeval_cold_cache \
        else (Path(args.out) / "hf-datasets-cache")
    warm = cache.is_dir() and any(cache.iterdir())
    m = measure(cmd, lr.lmeval_env(cache), run_dir / "logs", f"lmeval-{model_type}", REPO,
                also_pids=(server.proc.pid,) if server else ())
    r = _result(m, f"lm-eval {lr.LMEVAL_VERSION}, --model {model_type}", "lm-eval", model_type,
                out)
    r.acc_name = task.acc_rows[0]
    if r.status != "ok":
        return r, [], []
    r.note = f"datasets cache {'warm' if warm else 'cold'} ({cache})"
    table = lr.lmeval_table(m.stdout)
    (run_dir / f"lmeval-{model_type}-table.txt").write_text(table)
    print(f"\nlm-eval's own output ({model_type}):\n{table}")
    res = lr.read_results(out)
    questions, requests = lr.read_samples(out, task.samples_re, task.lmeval_id)
    r.questions = len(questions)
    r.prompt_tokens = sum(counter.count(pairs) for _, pairs in requests) if counter else None
    r.tool_reported_s = _float(res.get("total_evaluation_time_seconds"))
    r.tool_reported_what = "lm-eval's total_evaluation_time_seconds"
    _read_acc(r, res, task)
    r.warning = degenerate(questions)
    if r.warning and model_type == "gguf":
        r.warning += (" (lm-eval's gguf model drops the last echoed token as the generated one, "
                      "but llama-cpp-python's echo logprobs stop at the prompt, so the "
                      "continuation's log-probability is dropped)")
    fill_rates(r)
    return r, questions, requests


def _mmlu_bench_cmd(args, task, backend: str, limit: int, out: Path) -> list:
    cmd = [sys.executable, "-m", "mmlu_bench.cli", "run", "--model", f"{backend}:{args.model}",
           "--data-dir", args.data_dir, "--num-fewshot", str(args.num_fewshot),
           "--output", out, "--no-progress"]
    if limit:
        cmd += ["--limit", str(limit)]
    cmd += task.mmlu_bench_args() + chat_args(args, "mmlu-bench")
    if backend == "hf":
        return cmd + ["--device", args.device]
    return cmd + ["--threads", str(args.threads), "--ctx-size", str(args.gguf_ctx)]


def chat_args(args, tool: str) -> list[str]:
    """--apply-chat-template as each tool spells it (lm-eval: few-shot multi-turn by default)."""
    if not getattr(args, "apply_chat_template", False):
        return []
    if tool == "lm-eval":
        return ["--apply_chat_template"] + (["--fewshot_as_multiturn", "false"]
                                            if args.no_fewshot_as_multiturn else [])
    return ["--apply-chat-template"] + (["--no-fewshot-as-multiturn"]
                                        if args.no_fewshot_as_multiturn else [])


def read_records(path: Path) -> tuple[dict, list[dict], dict | None]:
    """mmlu-bench's records.jsonl as plain dicts: (header, records, footer). Read as JSON, not
    through mmlu_bench.records, so that fields the bench does not use may come and go."""
    header, records, footer = {}, [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        if "header" in d:
            header = d["header"]
        elif "footer" in d:
            footer = d["footer"]
        else:
            records.append(d)
    return header, records, footer


def mmlu_bench_questions(records: list[dict], id_field: str) -> list[dict]:
    """mmlu-bench's records -> per-question dicts (agreement.py), named by `id_field`."""
    return [{"id": r[id_field], "lls": list(r["loglikelihoods"]), "pred": r["pred"],
             "gold": r["gold"], "prompt_sha256": r["prompt_sha256"],
             "n_tokens": r.get("n_tokens")} for r in records]


def run_mmlu_bench(args, task, run_dir: Path, backend: str, limit: int, counter,
                   lm_requests: list | None = None) -> tuple[ToolResult, list]:
    out = run_dir / f"mmlu-bench-{backend}"
    cmd = _mmlu_bench_cmd(args, task, backend, limit, out)
    m = measure(cmd, dict(os.environ), run_dir / "logs", f"mmlu-bench-{backend}", REPO)
    r = _result(m, f"mmlu-bench, --model {backend}:", "mmlu-bench", backend, out)
    r.acc_name = task.acc_rows[0]
    if r.status != "ok":
        return r, []
    (run_dir / f"mmlu-bench-{backend}-table.txt").write_text(m.stdout)
    print(f"\nmmlu-bench's own output ({backend}):\n{m.stdout}")
    _, records, footer = read_records(out / "records.jsonl")
    questions = mmlu_bench_questions(records, task.record_id)
    r.questions = len(questions)
    r.prompt_tokens, r.note = task.mmlu_bench_tokens(questions, limit, counter, lm_requests)
    r.model_input_tokens = sum(q["n_tokens"] or 0 for q in questions)
    r.tool_reported_s = _float((footer or {}).get("wall_seconds"))
    r.tool_reported_what = "mmlu-bench's scoring time (records footer)"
    results = out / "results.json"
    _read_acc(r, json.loads(results.read_text()) if results.is_file() else {}, task)
    r.warning = degenerate(questions)
    fill_rates(r)
    return r, questions


def _float(v):
    try:
        return round(float(v), 2)
    except (TypeError, ValueError):
        return None


def _read_acc(r: ToolResult, results: dict, task) -> None:
    """The task's headline accuracy and group tree from a results.json (lm-eval's layout;
    mmlu-bench's too)."""
    rows = results.get("results", {})
    row = next((rows[k] for k in task.acc_rows if k in rows), {})
    r.mmlu_acc = row.get("acc,none", row.get("acc"))
    r.group_tree = results.get("group_subtasks")


def skip(label, tool, backend, why) -> ToolResult:
    print(f"\n[skip] {label}: {why}", flush=True)
    return ToolResult(label, tool, backend, "skipped", note=why)


def gguf_inprocess_missing() -> str | None:
    if importlib.util.find_spec("mmlu_bench.backends.llamacpp") is None:
        return "mmlu_bench.backends.llamacpp does not exist (yet)"
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama_cpp is not importable by {sys.executable}"
    return None
