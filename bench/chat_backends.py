#!/usr/bin/env python3
"""Chat-template scoring: do mmlu-bench's gguf: (llama.cpp in-process) and openai: (a
llama-cpp-python server's /chat/completions, its own template) agree with its hf: run?

lm-eval's gguf model cannot apply a chat template, so these two are compared with the hf: run
that bench_vs_lmeval.py --apply-chat-template checked against lm-eval (or any chat run folder
of the same model, data, shots and limit). Prints the prediction agreement with hf: and how
far the log-likelihoods are apart; gguf: scores "\\nA" (the generation prompt's newline moved
into the continuation, as lm-eval does), the server only "A", so for openai: the letters are
compared relative to each question's first letter (the shared newline term cancels).

    python bench/chat_backends.py --hf-run bench/out/<stamp>_0shot_limit10_chat/mmlu-bench-hf
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from tests.servers import SERVER_MAIN, free_port, wait_ready  # noqa: E402


def records(run: Path) -> tuple[dict, dict[str, dict]]:
    header, out = {}, {}
    for line in (run / "records.jsonl").read_text().splitlines():
        d = json.loads(line)
        if "header" in d:
            header = d["header"]
        elif "qid" in d:
            out[d["qid"]] = d
    return header, out


def mmlu_bench(model: str, header: dict, out: Path, extra: list[str]) -> float:
    s = header["backend_info"]["settings"]
    cmd = [sys.executable, "-m", "mmlu_bench.cli", "run", "--model", model,
           "--data-dir", s["data_dir"], "--num-fewshot", str(header["num_fewshot"]),
           "--output", str(out), "--no-progress", *extra]
    if header.get("chat"):  # a plain hf: run is compared in plain mode
        cmd.append("--apply-chat-template")
    if header.get("limit"):
        cmd += ["--limit", str(header["limit"])]
    if s.get("subjects"):
        cmd += ["--subjects", s["subjects"]]
    if s.get("fewshot_as_multiturn") is False:
        cmd.append("--no-fewshot-as-multiturn")
    print("$ " + " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(
                       p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)})
    return time.perf_counter() - start


def compare(name: str, hf: dict[str, dict], other: dict[str, dict], relative: bool) -> dict:
    same = sum(other[q]["pred"] == r["pred"] for q, r in hf.items() if q in other)
    missing = sum(None in other[q]["loglikelihoods"] for q in hf if q in other)
    diffs = []
    for q, r in hf.items():
        lls = other.get(q, {}).get("loglikelihoods")
        if not lls or None in lls:
            continue
        a, b = r["loglikelihoods"], lls
        if relative:
            a, b = [x - a[0] for x in a], [x - b[0] for x in b]
        diffs.append(max(abs(x - y) for x, y in zip(a, b, strict=True)))
    diffs.sort()
    out = {"questions": len(hf), "scored": len(other), "same_prediction": same,
           "agreement": round(same / len(hf), 4), "missing_letters": missing,
           "max_abs_ll_diff": round(diffs[-1], 4) if diffs else None,
           "median_abs_ll_diff": round(diffs[len(diffs) // 2], 4) if diffs else None}
    print(f"{name}: {same}/{len(hf)} predictions as hf: ({100 * same / len(hf):.1f}%), "
          f"{missing} with a letter outside the top 20, |LL diff| median "
          f"{out['median_abs_ll_diff']} max {out['max_abs_ll_diff']}"
          + (" (relative to letter A)" if relative else ""), flush=True)
    return out


def margins(hf: dict[str, dict]) -> dict:
    """How far apart the hf: run's two best letters are: near ties flip under small
    arithmetic differences (llama.cpp's quantized matmuls vs fp32)."""
    gaps = sorted(sorted(r["loglikelihoods"])[-1] - sorted(r["loglikelihoods"])[-2]
                  for r in hf.values())
    out = {"median_top2_margin": round(gaps[len(gaps) // 2], 3),
           "under_0.1": round(sum(g < 0.1 for g in gaps) / len(gaps), 3)}
    print(f"hf: top-two letter margin median {out['median_top2_margin']} nats; "
          f"{out['under_0.1']:.1%} of questions under 0.1", flush=True)
    return out


def serve(model: str, ctx: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        # SERVER_MAIN: llama.cpp's AMX kernels crash on this model (backends/llamacpp.py).
        [sys.executable, "-c", SERVER_MAIN, "--model", model, "--host", "127.0.0.1",
         "--port", str(port), "--model_alias", "smollm2", "--n_ctx", str(ctx),
         "--n_threads", "1", "--n_threads_batch", "1"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}/v1"
    wait_ready(base + "/models", 300, proc)
    return proc, base


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hf-run", required=True, type=Path,
                   help="an hf: run folder (chat; a plain one compares gguf: in plain mode)")
    p.add_argument("--margins-only", action="store_true",
                   help="print the hf: run's letter margins and stop")
    p.add_argument("--out", type=Path, default=BENCH / "out" / "chat-backends")
    p.add_argument("--ctx", type=int, default=2048, help="llama.cpp context (both)")
    p.add_argument("--only", choices=["gguf", "openai"])
    p.add_argument("--gguf", type=Path, help="score this GGUF instead of the hf: run's model "
                   "(an F32 copy of it: bench/gguf_f32.py)")
    args = p.parse_args()
    header, hf = records(args.hf_run)
    model = str(args.gguf or header["model"])
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"hf_run": str(args.hf_run), "prompt_format": header["prompt_format"],
               "model": model, "hf_margins": margins(hf)}
    if args.margins_only:
        return 0
    chat = bool(header.get("chat"))
    if args.only != "openai":
        wall = mmlu_bench(f"gguf:{model}", header, args.out / "gguf",
                          ["--threads", "1", "--ctx-size", str(args.ctx)])
        # plain: " A".." D" against fp32 differ by a shared offset too; compare letters apart
        summary["gguf"] = {**compare("gguf:", hf, records(args.out / "gguf")[1], not chat),
                           "wall_s": round(wall, 1)}
    if args.only != "gguf" and chat:
        proc, base = serve(model, args.ctx, args.out / "llama-server.log")
        try:
            wall = mmlu_bench(f"openai:{base}", header, args.out / "openai",
                              ["--model-name", "smollm2", "--concurrency", "1"])
        finally:
            proc.kill()
            proc.wait()
        summary["openai"] = {**compare("openai: (server chat template)", hf,
                                       records(args.out / "openai")[1], True),
                             "wall_s": round(wall, 1)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"All figures: {args.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
