"""gguf: on a multi-core CPU: units in lanes, each lane its own llama.cpp context.

One context split over two threads waits at every graph barrier for the slower thread; beside
other busy processes the scheduler parks one of them for a time slice while the other waits,
and a 2-thread run took 4-6x its quiet time where its half of the CPU explains 2x (issue 22).
Two contexts on one thread each never wait for each other: each takes a unit (a subject's
unrecorded questions) as it finishes the last, scores or generates it with its own KV cache,
and keeps its share of a busy CPU. The file is mapped (mmap), so the second context shares the
weights; it adds its own KV cache. A question's numbers do not depend on which context or how
many threads compute it (llama.cpp splits rows, not sums, among threads), so records equal a
one-lane run's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_DONE = object()


def in_lanes(views: list, units: Iterable[list], answer: str) -> Iterator[list]:
    """`view.<answer>(todo)`'s lists for each unit's unrecorded requests, by whichever view
    (one thread each) is free, as they come. An error in one lane stops the others after
    their current list and is raised here; so is the caller's interruption. One view: the
    units one after another in this thread."""
    if len(views) == 1:
        for todo in units:
            yield from getattr(views[0], answer)(todo)
        return
    source, lock, results, stop = iter(units), threading.Lock(), queue.Queue(), \
        threading.Event()

    def lane(view) -> None:
        try:
            while not stop.is_set():
                with lock:  # the runner's groups are built lazily: one lane asks at a time
                    todo = next(source, None)
                if todo is None:
                    break
                for batch in getattr(view, answer)(todo):
                    results.put((batch, None))
                    if stop.is_set():
                        break
        except BaseException as e:  # re-raised in the caller's thread
            stop.set()
            results.put((None, e))
        finally:
            results.put(_DONE)

    workers = [threading.Thread(target=lane, args=(v,), daemon=True) for v in views]
    try:
        for w in workers:
            w.start()
        running = len(workers)
        while running:
            item = results.get()
            if item is _DONE:
                running -= 1
                continue
            batch, error = item
            if error is not None:
                raise error
            yield batch
    finally:
        stop.set()
        for w in workers:
            if w.ident is not None:
                w.join()
