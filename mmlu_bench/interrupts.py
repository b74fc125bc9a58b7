"""Ctrl-C and SIGTERM: stop the run without losing or tearing what is recorded.

The first signal abandons the batch being scored (every batch before it is on disk) and
unwinds to the CLI, which prints the command that resumes; a second one exits at once.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the run; everything recorded before is kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts():
    """SIGINT and SIGTERM raise Interrupted (the current batch is abandoned; every batch
    before it is on disk); a second signal kills at once. For the main thread of a CLI."""

    def stop(signum, frame):
        for s in STOP_SIGNALS:  # the next one takes the default action: exit now
            signal.signal(s, signal.SIG_DFL)
        raise Interrupted(signum)

    old = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def signals_held():
    """Hold SIGINT/SIGTERM until a batch is written: an interrupt never tears a batch."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not \
            threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
