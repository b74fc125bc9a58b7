"""How many CPU threads an in-process backend computes on: the cores other work leaves free.

A forward pass split over N threads waits at every barrier for the last of them (torch's
OpenMP regions, llama.cpp's graph barriers: hundreds per token). Beside another busy process
the scheduler keeps one of our threads off its core for a time slice (milliseconds) while the
others wait, so N threads on a machine with fewer than N free cores run far slower than their
share: on 2 cores beside two busy loops, a 2-thread generation took 3.8x to 6.3x its quiet
time where its half of the CPU explains 2x (issue 22; bench/fairness.py). On cores nobody else
wants, N threads are the fastest. So the count follows the load: the cores left when the other
processes' CPU use (from /proc/stat, less our own) is taken away, re-read every RECHECK_S
between passes. Thread count never changes a number: torch's and llama.cpp's CPU kernels split
rows, not sums, among threads (tests/test_cpu_share.py checks both bit for bit).

`--threads N` fixes the count. Where /proc is missing (macOS), the count is the cores less the
1-minute load average, read once at the start.
"""

from __future__ import annotations

import os
import threading
import time

RECHECK_S = 2.0  # how often the load is read again: a pass or a few decoding steps
FIRST_LOOK_S = 0.25  # the window of the first reading, before any pass has run


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_ticks() -> tuple[int, int, int] | None:
    """(busy ticks of all CPUs, all ticks of all CPUs, this process's ticks), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            # The command name (field 2) may hold spaces; utime and stime follow its ')'.
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields), int(own[11]) + int(own[12])


class CpuShare:
    """The thread count to compute on now (`check`), for the threads of one backend. It sets
    nothing itself: each caller applies the count in the thread that computes (an OpenMP
    team's size belongs to the thread that starts it)."""

    def __init__(self, fixed: int | None, most: int | None = None) -> None:
        self.most, self.fixed = fixed or most or cores(), fixed
        self.lock = threading.Lock()
        self._last, self._at = (None if fixed else _cpu_ticks()), time.monotonic()
        if fixed:
            self.threads, self.why = fixed, "--threads"
        else:
            if self._last is not None:
                time.sleep(FIRST_LOOK_S)
            self.threads = self._free()
            self.why = (f"{self.threads} of {self.most} cores free of other work at the start; "
                        f"re-read every {RECHECK_S:g} s")

    def info(self) -> dict:
        """What the run header records."""
        return {"threads": self.threads, "threads_why": self.why}

    def check(self) -> int:
        """The count for the next pass; the load is read again every RECHECK_S."""
        # Without /proc the load average counts our own threads: it is read at the start only.
        if self.fixed or self._last is None or time.monotonic() - self._at < RECHECK_S:
            return self.threads
        with self.lock:
            if time.monotonic() - self._at >= RECHECK_S:  # not done by another thread meanwhile
                self.threads = self._free()
        return self.threads

    def _free(self) -> int:
        """The cores the other processes left free since the last reading, at least one."""
        now, at = _cpu_ticks(), time.monotonic()
        last, self._last, self._at = self._last, now, at
        if now is None or last is None:
            return _free_by_loadavg(self.most)
        busy, total, own = (a - b for a, b in zip(now, last))
        if total <= 0:
            return self.threads
        machine = os.cpu_count() or 1
        others = max(0.0, (busy - own) / total * machine)  # in cores
        return max(1, min(self.most, int(self.most - others + 0.5)))


def _free_by_loadavg(most: int) -> int:
    try:
        load = os.getloadavg()[0]
    except OSError:
        return most
    return max(1, min(most, int(most - load + 0.5)))
