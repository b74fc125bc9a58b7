"""Measuring a child process: wall time and peak RSS of its whole process tree.

`measure` runs a command to completion with stdout kept in a file and stderr in a log; a
`TreeSampler` thread sums the RSS of the child and all its descendants (and of any other
processes named, e.g. a model server the child talks to) every 0.1 s. The kernel's peak RSS of
the largest single process (wait4's ru_maxrss) is kept beside it: sampling can miss a short
peak, the kernel cannot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


class TreeSampler(threading.Thread):
    """Peak summed RSS of some processes and all their descendants, sampled."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.peak = 0
        self.samples = 0
        self._stop_event = threading.Event()
        try:
            import psutil
            self.psutil = psutil
        except ImportError:
            self.psutil = None

    def _tree(self, pid: int) -> list:
        ps = self.psutil
        try:
            root = ps.Process(pid)
            return [root, *root.children(recursive=True)]
        except ps.Error:
            return []

    def sample(self) -> None:
        total, seen = 0, set()
        for pid in self.pids:
            for p in self._tree(pid):
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                try:
                    total += p.memory_info().rss
                except self.psutil.Error:
                    pass
        self.peak = max(self.peak, total)
        self.samples += 1

    def run(self) -> None:
        # Signals go to the main thread, so that Ctrl-C interrupts its wait for the child.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        if self.psutil is None:
            return
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Measured:
    cmd: list[str]
    rc: int
    wall_s: float
    peak_tree_rss: int | None  # bytes, sampled
    peak_process_rss: int  # bytes, kernel's maxrss of the largest process in the child's tree
    stdout: str
    stderr_log: str


def _wait(proc: subprocess.Popen):
    """wait4 on the child: (exit code, rusage); Ctrl-C ends the child before it propagates."""
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def measure(cmd: list, env: dict, logs: Path, name: str, cwd: Path,
            also_pids: tuple[int, ...] = ()) -> Measured:
    """Run cmd to completion; wall time, peak RSS. stdout is kept, stderr goes to a log."""
    out_path, err_path = logs / f"{name}.stdout.txt", logs / f"{name}.stderr.txt"
    print(f"\n[{time.strftime('%H:%M:%S')}] running {name}:\n  $ {' '.join(map(str, cmd))}\n"
          f"  (log: {err_path})", flush=True)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env,
                                cwd=cwd)
        sampler = TreeSampler([proc.pid, *also_pids])
        sampler.start()
        rc, usage = _wait(proc)
        wall = time.perf_counter() - start
        sampler.stop()
    # The tree's peak is at least its largest process's peak, which sampling can miss.
    largest = usage.ru_maxrss * 1024
    m = Measured([str(c) for c in cmd], rc, wall,
                 max(sampler.peak, largest) if sampler.psutil else None, largest,
                 out_path.read_text(errors="replace"), str(err_path))
    if m.rc:
        tail = err_path.read_text(errors="replace")[-4000:]
        print(f"  !! {name} exited with {m.rc}; the end of its log:\n{tail}", flush=True)
    else:
        print(f"  done in {wall:.1f} s", flush=True)
    return m


def stop_measured(proc: subprocess.Popen, sampler: TreeSampler,
                  grace_s: float = 30) -> tuple[int | None, int]:
    """Terminate a long-lived child (a server) measured by `sampler`: (sampled peak RSS,
    kernel peak RSS) over its whole life. It is killed when it ignores SIGTERM for grace_s."""
    proc.terminate()
    usage, deadline = None, time.monotonic() + grace_s
    try:
        while True:
            pid, _, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, _, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
    except ChildProcessError:
        usage = None
    proc.returncode = 0
    sampler.stop()
    largest = usage.ru_maxrss * 1024 if usage else 0
    return (max(sampler.peak, largest) if sampler.psutil else None, largest)
