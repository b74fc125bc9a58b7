"""Fair on a busy machine: each mode's scoring time alone and beside N busy-loop processes.

    python bench/fairness.py                      # N = the core count, the four modes
    python bench/fairness.py --busy 2 --repeat 2  # the best of two runs of each

Every mode runs `mmlu-bench run` on the demo model (SmolLM2-135M-Instruct) twice: on the
machine as it is, then beside N processes that each spin one core (started and stopped here).
The figure is the run's own scoring time (records.jsonl's footer, model loading left out).
With N = the core count, a fair share is about a 2x slowdown: the busy loops and mmlu-bench
get half the CPU each. `--env K=V` and `--threads` run the modes with other settings, to find
what a slowdown comes from (e.g. `--env OMP_WAIT_POLICY=ACTIVE`, the old spinning default).
The machine's load before the run is printed: figures from a loaded machine are not quiet ones.
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_once(args: list[str], env: dict, out: Path) -> tuple[float, dict]:
    """(scoring seconds, the run header's backend_info) of one run into a fresh folder."""
    cmd = [sys.executable, "-c", CLI, "run", *args, "--output", str(out), "--no-progress"]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    header, _, footer = read(out / "records.jsonl")
    return footer.wall_seconds, header.backend_info


def timed(mode: str, env: dict, extra: list[str], repeat: int, work: Path, tag: str):
    """The best scoring time of `repeat` runs of a mode, and what the run recorded."""
    best, info = None, {}
    for i in range(repeat):
        seconds, info = run_once([*MODES[mode][1], *extra], env, work / f"{mode}-{tag}-{i}")
        best = seconds if best is None else min(best, seconds)
    return best, info


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", type=int, default=os.cpu_count(), help="busy loops (cores)")
    p.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    p.add_argument("--repeat", type=int, default=1, help="runs of each; the best is kept")
    p.add_argument("--threads", type=int, help="pass --threads N to every run")
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args()
    env = {**os.environ, **dict(kv.split("=", 1) for kv in a.env)}
    extra = ["--threads", str(a.threads)] if a.threads else []
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min), "
          f"{os.cpu_count()} cores, busy loops: {a.busy}"
          + (f", env {' '.join(a.env)}" if a.env else "") + (f", {extra}" if extra else ""))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmlu-fair-") as tmp:
        for mode in a.modes.split(","):
            alone, info = timed(mode, env, extra, a.repeat, Path(tmp), "alone")
            with BusyLoops(a.busy):
                busy, busy_info = timed(mode, env, extra, a.repeat, Path(tmp), "busy")
            rows.append(dict(mode=mode, label=MODES[mode][0], alone_s=alone, busy_s=busy,
                             slowdown=busy / alone, threads=info.get("threads"),
                             busy_threads=busy_info.get("threads")))
            print(f"  {mode}: {alone:.1f} s alone, {busy:.1f} s busy "
                  f"({busy / alone:.2f}x); threads {rows[-1]['threads']} -> "
                  f"{rows[-1]['busy_threads']}", flush=True)
    print(f"\n| mode | alone (scoring time) | beside {a.busy} busy cores | slowdown |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['label']} | {r['alone_s']:.1f} s | {r['busy_s']:.1f} s | "
              f"{r['slowdown']:.1f}x |")
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
