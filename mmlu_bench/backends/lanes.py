"""Forward passes in parallel lanes, one thread each: how the hf backend uses a CPU's cores.

On a 2-core CPU, two single-threaded passes at once ran a 135M model's 5-shot batches ~1.2x
faster than the same passes one after another on two threads: a pass over a few hundred tokens
is many small matrix products and element-wise operations that split poorly across cores (each
waits for the other at every operation), while two independent passes keep both cores busy.
The weights are shared; each lane holds only its own pass's activations.

Work comes in groups (a subject): a setup pass (the shared prefix's cache), then batches that
read it. A lane with nothing ready in the current group sets up the next one, so neither core
waits for a long prefix pass. At most `AHEAD` groups are open at once, which bounds the
memory. Batches do not depend on which lane takes them, in what order, or on how many threads
the load allows a lane (cpu_share.py: kernels split rows among threads, never sums), so results
do not depend on timing, and a resumed run computes each batch bit for bit as before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

AHEAD = 2
_DONE = object()


@dataclass
class Group:
    key: Any
    setup: Callable[[], Any]  # returns the state every batch of the group reads
    todo: list
    state: Any = None
    started: bool = False
    ready: bool = False
    running: int = 0

    def open(self) -> bool:
        return bool(self.todo or self.running or not self.started)


class _Lanes:
    """What the lanes of one run() share: the open groups (oldest first) and where they come
    from, the finished passes, and the lock and stop signal over them."""

    def __init__(self, groups: Iterable, forward: Callable[[Any, Any], Any],
                 set_threads: Callable[[int], None], threads: Callable[[], int]) -> None:
        self.source = iter(groups)
        self.forward, self.set_threads, self.threads = forward, set_threads, threads
        self.work: list[Group] = []
        self.fetching, self.more = False, True
        self.results: queue.Queue = queue.Queue()
        self.lock = threading.Condition()
        self.stop = threading.Event()

    def take(self) -> tuple[Group, Any] | None:
        """The next pass for a lane: a ready batch of the earliest open group, else a group's
        setup (batch None); None once all is done. Called holding the lock."""
        while not self.stop.is_set():
            self.work[:] = [g for g in self.work if g.open()]
            for g in self.work:
                if g.ready and g.todo:
                    g.running += 1
                    return g, g.todo.pop(0)
                if not g.started:
                    g.started, g.running = True, 1
                    return g, None
            if len(self.work) < AHEAD and self.more and not self.fetching:
                self._fetch()
                continue
            if not self.work and not self.more:
                return None
            self.lock.wait()
        return None

    def _fetch(self) -> None:
        """Open the next group. The lock is released meanwhile: planning a group (tokenizing
        a subject) takes a while, and the other lane may run a pass."""
        self.fetching = True
        self.lock.release()
        try:
            group = next(self.source, None)
        finally:
            self.lock.acquire()
            self.fetching = False
            self.lock.notify_all()
        if group is None:
            self.more = False
        else:
            key, setup, batches = group
            self.work.append(Group(key, setup, list(batches)))

    def lane(self) -> None:
        """One lane's thread: passes until none is left; an error stops the others."""
        try:
            team = self.threads()
            self.set_threads(team)  # this thread's own team size
            while (task := self._locked(self.take)) is not None:
                g, batch = task
                if team != (n := self.threads()):  # as the load allows (cpu_share.py)
                    team = n
                    self.set_threads(n)
                if batch is None:
                    state, out = g.setup(), None
                else:
                    state, out = g.state, self.forward(batch, g.state)
                self._locked(self._done, g, batch, state)
                if batch is not None:
                    self.results.put((g.key, batch, out, None))
        except BaseException as e:  # re-raised in the caller's thread
            self.stop.set()
            self.results.put((None, None, None, e))
        finally:
            self._locked(self.lock.notify_all)
            self.results.put(_DONE)

    def _done(self, g: Group, batch, state) -> None:
        g.running -= 1
        if batch is None:
            g.state, g.ready = state, True
        elif not g.todo and not g.running:
            g.state = None  # the group is done: free its cache
        self.lock.notify_all()

    def _locked(self, fn, *args):
        with self.lock:
            return fn(*args)


def run(groups: Iterable[tuple[Any, Callable[[], Any], Sequence]],
        forward: Callable[[Any, Any], Any], lanes: int, set_threads: Callable[[int], None],
        threads: Callable[[], int], restore: int) -> Iterator[tuple[Any, Any, Any]]:
    """(key, batch, forward(batch, state)) as each pass finishes, for groups (key, setup,
    batches) taken from `groups` as lanes need them, by `lanes` threads each running `threads()`
    threads (asked before each pass). An error in one lane stops the others after their
    current pass and is raised here; so is an interruption of the caller. Threads are set
    back to `restore` at the end."""
    shared = _Lanes(groups, forward, set_threads, threads)
    workers = [threading.Thread(target=shared.lane, daemon=True) for _ in range(lanes)]
    try:
        for w in workers:
            w.start()
        running = len(workers)
        while running:
            item = shared.results.get()
            if item is _DONE:
                running -= 1
                continue
            key, batch, out, error = item
            if error is not None:
                raise error
            yield key, batch, out
    finally:
        shared.stop.set()
        shared._locked(shared.lock.notify_all)
        for w in workers:
            if w.ident is not None:
                w.join()
        set_threads(restore)
