"""Parallel lanes (backends/lanes.py): every batch once, with its group's state, two at a time."""

from __future__ import annotations

import threading
import time

import pytest

from mmlu_bench.backends import lanes

WAIT = 10  # seconds: a barrier that times out means the lanes did not overlap


def groups_of(sizes, log, open_now=None):
    """Groups (key, setup, batches) made lazily, as the lanes ask for them."""
    for key, size in enumerate(sizes):
        log.append(("fetch", key))
        if open_now is not None:
            open_now.append(key)
        yield key, (lambda k=key: log.append(("setup", k)) or f"state{k}"), \
            [(key, i) for i in range(size)]


def run(groups, forward, calls=None, n=2):
    calls = [] if calls is None else calls
    return list(lanes.run(groups, forward, n, calls.append, lambda: 1, 7))


def test_every_batch_once_with_its_groups_state_and_threads_restored():
    log, calls = [], []
    out = run(groups_of([3, 1, 4, 2], log), lambda batch, state: (batch, state), calls)
    assert sorted(b for _, b, _ in out) == sorted((k, i) for k, n in enumerate([3, 1, 4, 2])
                                                  for i in range(n))
    assert all(res == (batch, f"state{key}") and batch[0] == key for key, batch, res in out)
    assert sorted(x for x in log if x[0] == "setup") == [("setup", k) for k in range(4)]
    assert calls[:2] == [1, 1] and calls[-1] == 7, "one thread per lane, then put back"


def test_two_lanes_run_at_once():
    barrier = threading.Barrier(2, timeout=WAIT)

    def forward(batch, state):
        barrier.wait()  # raises BrokenBarrierError unless the other lane is in a pass too
        return batch

    assert len(run(groups_of([4], []), forward)) == 4


def test_the_next_groups_setup_runs_beside_this_groups_last_batch():
    next_setup = threading.Event()

    def groups():
        yield 0, lambda: "s0", ["long"]
        yield 1, lambda: next_setup.set() or "s1", ["short"]

    def forward(batch, state):
        if batch == "long":
            assert next_setup.wait(WAIT), "group 1 was not set up while group 0 ran"
        return state

    assert sorted(run(groups(), forward)) == [(0, "long", "s0"), (1, "short", "s1")]


def test_at_most_AHEAD_groups_are_open_and_groups_are_fetched_lazily():
    log, open_now, peak, lock = [], [], [0], threading.Lock()
    remaining = {k: n for k, n in enumerate([2, 3, 1, 2, 2, 1])}

    def forward(batch, state):
        with lock:
            peak[0] = max(peak[0], len(open_now))
            remaining[batch[0]] -= 1
            if not remaining[batch[0]]:
                open_now.remove(batch[0])
        return batch

    run(groups_of(remaining.copy().values(), log, open_now), forward)
    assert peak[0] <= lanes.AHEAD
    assert [k for what, k in log if what == "fetch"] == list(range(6))


def test_an_error_in_a_lane_reaches_the_caller_and_stops_the_others():
    calls, seen = [], []

    def forward(batch, state):
        seen.append(batch)
        if batch == (0, 1):
            raise RuntimeError("out of memory")
        return batch

    with pytest.raises(RuntimeError, match="out of memory"):
        run(groups_of([2, 50], []), forward, calls)
    assert len(seen) < 52, "the other lane stopped"
    assert calls[-1] == 7


def test_a_caller_that_stops_early_stops_the_lanes():
    calls, seen, before = [], [], threading.active_count()

    def forward(batch, state):
        seen.append(batch)
        time.sleep(0.01)  # 100 batches take a second in each lane
        return batch

    stream = lanes.run(groups_of([100], []), forward, 2, calls.append, lambda: 1, 7)
    next(stream)
    stream.close()
    assert len(seen) < 100 and calls[-1] == 7
    assert threading.active_count() == before, "lanes joined"


def test_a_lane_follows_the_thread_count_it_is_given_pass_by_pass():
    counts = iter([2, 2, 1, 1, 1, 1, 1, 1])
    calls = []
    out = list(lanes.run(groups_of([6], []), lambda batch, state: batch, 1, calls.append,
                         lambda: next(counts), 7))
    assert len(out) == 6
    assert calls == [2, 1, 7], "set at the start, again when the count changed, put back"
