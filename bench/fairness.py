"""Fair on a busy machine: each mode's scoring time alone and beside N busy-loop processes.

    python bench/fairness.py                      # N = the core count, the four modes
    python bench/fairness.py --busy 2 --repeat 2  # the best of two runs of each

Every mode runs `mmlu-bench run` on the demo model (SmolLM2-135M-Instruct) twice: on the
machine as it is, then beside N processes that each spin one core (started and stopped here).
The figure is the run's own scoring time (records.jsonl's footer, model loading left out).
With N = the core count, a fair share is about a 2x slowdown: the busy loops and mmlu-bench
get half the CPU each. `--baseline DIR` runs another checkout's code the same way in the same
run (before/after); `--env K=V` and `--threads` run the modes with other settings, to find what
a slowdown comes from (e.g. `--env OMP_WAIT_POLICY=PASSIVE`, `--threads 1`).
The machine's load before the run is printed: figures from a loaded machine are not quiet ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmlu_bench.records import read

REPO = Path(__file__).resolve().parent.parent

# (label, run arguments): the modes instruct models need, at the sizes issue 22 measured.
MODES = {
    "hf-letter": ("`hf:` letter scoring, `--limit 3`", ["--model", "demo", "--limit", "3"]),
    "hf-generative": ("`hf:` `--format generative`, `--limit 1`",
                      ["--model", "demo", "--format", "generative", "--limit", "1"]),
    "gguf-letter": ("`gguf:` letter scoring, `--limit 1`", ["--model", "gguf:demo", "--limit", "1"]),
    "gguf-generative": ("`gguf:` `--format generative`, `--limit 1`",
                        ["--model", "gguf:demo", "--format", "generative", "--limit", "1"]),
}
SPIN = "while True: pass"
CLI = "import sys; from mmlu_bench.cli import main; sys.exit(main(sys.argv[1:]))"


def run_once(args: list[str], env: dict, out: Path) -> tuple[float, float, dict]:
    """(scoring seconds, CPU seconds of the whole run, the header's backend_info) of one run
    into a fresh folder. CPU seconds count spinning too: a run that waits actively burns
    them."""
    cmd = [sys.executable, "-c", CLI, "run", *args, "--output", str(out), "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # `python -c` puts the working folder first on sys.path: it picks the code that runs.
    done = subprocess.run(cmd, env=env, cwd=env["PYTHONPATH"], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    header, _, footer = read(out / "records.jsonl")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return footer.wall_seconds, cpu, header.backend_info


def timed(mode: str, env: dict, extra: list[str], repeat: int, out: Path) -> dict:
    """The best scoring time of `repeat` runs of a mode, with what the run recorded."""
    best = None
    for i in range(repeat):
        seconds, cpu, info = run_once([*MODES[mode][1], *extra], env, out / str(i))
        if best is None or seconds < best["s"]:
            best = dict(s=seconds, cpu_s=cpu, lanes=info.get("lanes"),
                        threads=info.get("threads"))
    return best


class BusyLoops:
    """N processes that each spin one core, for as long as the block runs."""

    def __init__(self, n: int) -> None:
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(self.n)]
        time.sleep(1.0)  # the scheduler sees them as running before the measured run starts
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def code_env(base: dict, repo: Path | None) -> dict:
    """The environment that runs mmlu-bench from `repo`'s code (None: this checkout's)."""
    return {**base, "PYTHONPATH": str(repo or REPO)}


def measure(a, mode: str, envs: dict, extra: list[str], tmp: Path) -> list[dict]:
    """One row per code version: alone, then beside the busy loops (alone runs first for
    every version, then the busy ones, so a drift in load hits all alike)."""
    rows = {name: dict(mode=mode, code=name) for name in envs}
    for name, env in envs.items():
        rows[name]["alone"] = timed(mode, env, extra, a.repeat, tmp / f"{mode}-{name}-alone")
    with BusyLoops(a.busy):
        for name, env in envs.items():
            rows[name]["busy"] = timed(mode, env, extra, a.repeat, tmp / f"{mode}-{name}-busy")
    for r in rows.values():
        r["slowdown"] = r["busy"]["s"] / r["alone"]["s"]
        print(f"  {mode} ({r['code']}): {r['alone']['s']:.1f} s alone, "
              f"{r['busy']['s']:.1f} s busy ({r['slowdown']:.2f}x); lanes x threads "
              f"{r['alone']['lanes']}x{r['alone']['threads']} -> "
              f"{r['busy']['lanes']}x{r['busy']['threads']}; CPU s {r['alone']['cpu_s']:.0f} "
              f"-> {r['busy']['cpu_s']:.0f}", flush=True)
    return list(rows.values())


def table(rows: list[dict], busy: int) -> str:
    lines = [f"| mode | code | alone (scoring time) | beside {busy} busy cores | slowdown "
             "| CPU seconds alone / busy |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {MODES[r['mode']][0]} | {r['code']} | {r['alone']['s']:.1f} s | "
                     f"{r['busy']['s']:.1f} s | {r['slowdown']:.1f}x | "
                     f"{r['alone']['cpu_s']:.0f} / {r['busy']['cpu_s']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", type=int, default=os.cpu_count(), help="busy loops (cores)")
    p.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    p.add_argument("--repeat", type=int, default=1, help="runs of each; the best is kept")
    p.add_argument("--threads", type=int, help="pass --threads N to every run")
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                   help="also run another checkout's code (e.g. a worktree of the last "
                        "release) in the same way, for before/after in one run")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args()
    base = {**os.environ, **dict(kv.split("=", 1) for kv in a.env)}
    envs = {"this": code_env(base, None)}
    if a.baseline:
        envs["baseline"] = code_env(base, a.baseline.resolve())
    extra = ["--threads", str(a.threads)] if a.threads else []
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min), "
          f"{os.cpu_count()} cores, busy loops: {a.busy}"
          + (f", env {' '.join(a.env)}" if a.env else "") + (f", {extra}" if extra else "")
          + (f", baseline {a.baseline}" if a.baseline else ""), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmlu-fair-") as tmp:
        for mode in a.modes.split(","):
            rows += measure(a, mode, envs, extra, Path(tmp))
    print("\n" + table(rows, a.busy))
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
