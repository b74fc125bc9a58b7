"""Lanes on a busy CPU (issue 22): gguf: runs units in two llama.cpp contexts and hf: runs its
generation batches in two single-threaded lanes; records equal one lane's bit for bit, and the
run header says how many lanes and threads ran, and why."""

from __future__ import annotations

import threading
import time

import pytest

import mmlu_bench
from mmlu_bench.backends.llamacpp_lanes import in_lanes

SUBJECTS = "anatomy,virology,management,marketing"


class View:
    def __init__(self, name: str, fail_on: str | None = None) -> None:
        self.name, self.fail_on, self.threads = name, fail_on, set()

    def score(self, todo):
        self.threads.add(threading.get_ident())
        for q in todo:
            if q == self.fail_on:
                raise RuntimeError(f"{self.name} failed on {q}")
            time.sleep(0.01)
            yield [(self.name, q)]


def test_every_unit_once_by_two_contexts_at_once():
    views = [View("a"), View("b")]
    units = [[f"{u}/{i}" for i in range(3)] for u in range(6)]
    got = [answer for batch in in_lanes(views, units, "score") for answer in batch]
    assert sorted(q for _, q in got) == sorted(q for unit in units for q in unit)
    assert {name for name, _ in got} == {"a", "b"}, "both contexts took units"
    assert views[0].threads.isdisjoint(views[1].threads), "each context in its own lane"


def test_an_error_in_one_lane_stops_the_other_and_is_raised_here():
    views = [View("a", fail_on="2/0"), View("b", fail_on="2/0")]
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="failed on 2/0"):
        list(in_lanes(views, [[f"{u}/{i}" for i in range(2)] for u in range(20)], "score"))
    assert threading.active_count() == before, "lanes joined"


def test_closing_the_stream_early_joins_the_lanes():
    before = threading.active_count()
    stream = in_lanes([View("a"), View("b")], [[f"{u}/0"] for u in range(100)], "score")
    next(stream)
    stream.close()
    assert threading.active_count() == before


def run(model: str, mmlu_dir, threads: int, **more):
    return mmlu_bench.evaluate(model, data_dir=str(mmlu_dir), subjects=SUBJECTS,
                               threads=threads, progress=False, **more)


def same_records(a, b) -> None:
    assert [(r.qid, r.loglikelihoods, r.response) for r in a.records] == \
        [(r.qid, r.loglikelihoods, r.response) for r in b.records]


@pytest.mark.slow
@pytest.mark.usefixtures("llama_cpp")
def test_gguf_in_two_contexts_equals_one(gguf_path, mmlu_dir):
    one = run(f"gguf:{gguf_path}", mmlu_dir, 1, limit=3, ctx_size=1024)
    two = run(f"gguf:{gguf_path}", mmlu_dir, 2, limit=3, ctx_size=1024)
    same_records(one, two)
    info = two.header.backend_info
    assert (info["lanes"], info["threads"], info["threads_why"]) == (2, 2, "--threads")
    assert one.header.backend_info["lanes"] == 1
    gen = dict(limit=1, format="generative", ctx_size=1024)
    same_records(run(f"gguf:{gguf_path}", mmlu_dir, 1, **gen),
                 run(f"gguf:{gguf_path}", mmlu_dir, 2, **gen))


@pytest.mark.slow
def test_hf_generation_in_two_lanes_equals_one(mmlu_dir, monkeypatch):
    """Generation goes in lanes once other work takes cores: here /proc/stat reads as if
    other processes kept every core busy."""
    from mmlu_bench.backends import cpu_share, lanes

    runs = []
    real = lanes.run
    monkeypatch.setattr(lanes, "run", lambda *a, **k: runs.append(a[2]) or real(*a, **k))
    # One row per batch: four batches, two at a time in two lanes.
    gen = dict(limit=1, format="generative", batch_size="1")
    ticks = iter(range(1, 10**6))

    def reading(busy: bool):  # (busy, total, own) ticks: every core busy or idle, none ours
        def ticks_now():
            n = next(ticks) * 1000
            return (n if busy else 0), n, 0
        return ticks_now

    monkeypatch.setattr(cpu_share, "_cpu_ticks", reading(busy=False))
    quiet = run("demo", mmlu_dir, None, **gen)
    assert runs == [], "a quiet CPU: one batch after another on all threads"
    monkeypatch.setattr(cpu_share, "_cpu_ticks", reading(busy=True))
    busy = run("demo", mmlu_dir, None, **gen)
    assert runs == [2], "a busy CPU: two lanes"
    assert busy.header.backend_info["threads"] == 1
    same_records(quiet, busy)
