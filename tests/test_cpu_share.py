"""Thread counts that follow the load (backends/cpu_share.py): the arithmetic on /proc/stat
readings, a real reading beside real busy loops, --threads, and that the count never changes a
number (torch and llama.cpp, bit for bit)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mmlu_bench.backends import cpu_share
from mmlu_bench.backends.cpu_share import CpuShare


def feed(monkeypatch, readings):
    """_cpu_ticks returns these (busy, total, own) readings one after another."""
    it = iter(readings)
    monkeypatch.setattr(cpu_share, "_cpu_ticks", lambda: next(it))
    monkeypatch.setattr(cpu_share, "FIRST_LOOK_S", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def test_the_cores_others_leave_free_and_our_own_use_does_not_count(monkeypatch):
    # 2 cores, 100 ticks per core per reading: others busy 0, then 2 cores, then 1 core
    # while we use 1.5 cores ourselves, then 0.4 cores (a half-free core is taken).
    feed(monkeypatch, [(0, 0, 0), (0, 200, 0), (200, 400, 0), (450, 600, 150),
                       (490, 800, 150)])
    monkeypatch.setattr(cpu_share, "RECHECK_S", 0)
    share = CpuShare(None, most=2)
    assert share.threads == 2 and "2 of 2 cores free" in share.why
    assert [share.check(), share.check(), share.check()] == [1, 1, 2]
    assert share.info()["threads"] == 2


def test_the_load_is_read_again_only_every_recheck_s(monkeypatch):
    feed(monkeypatch, [(0, 0, 0), (0, 200, 0), (200, 400, 0)])
    share = CpuShare(None, most=2)
    assert share.check() == 2, "read again before RECHECK_S"
    share._at -= cpu_share.RECHECK_S
    assert share.check() == 1


def test_threads_fixes_the_count_and_the_header_says_so(monkeypatch):
    monkeypatch.setattr(cpu_share, "_cpu_ticks", lambda: pytest.fail("no reading under "
                                                                     "--threads"))
    share = CpuShare(3, most=2)
    assert (share.check(), share.most) == (3, 3)
    assert share.info() == {"threads": 3, "threads_why": "--threads"}


def test_without_proc_the_load_average_is_read_once(monkeypatch):
    monkeypatch.setattr(cpu_share, "_cpu_ticks", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (3.0, 0, 0))
    share = CpuShare(None, most=4)
    assert share.threads == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0, 0))
    share._at -= cpu_share.RECHECK_S
    assert share.check() == 1, "our own threads would count in the load average"


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc (Linux)")
def test_beside_a_busy_loop_on_every_core_one_thread(monkeypatch):
    monkeypatch.setattr(cpu_share, "RECHECK_S", 0.5)
    n = cpu_share.cores()
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5)
        share = CpuShare(None, most=max(2, n))
        time.sleep(0.6)
        assert (share.threads, share.check()) == (1, 1)
    finally:
        for p in loops:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_torch_and_llamacpp_give_the_same_numbers_on_any_thread_count():
    """Why the count may follow the load mid-run: neither library splits a sum among
    threads, so 1 and 2 threads give the same logits bit for bit (a prompt batch, and
    llama.cpp's one-token decoding steps)."""
    import numpy as np
    import torch
    from llama_cpp import Llama

    from mmlu_bench import backends
    from mmlu_bench.config import RunConfig
    from mmlu_bench.demo import demo_gguf

    tokens = list(np.random.RandomState(0).randint(100, 40000, 200))
    model = backends.create(RunConfig.from_spec("demo")).model
    got = []
    for n in (1, 2):
        torch.set_num_threads(n)
        with torch.inference_mode():
            got.append(model(input_ids=torch.tensor([tokens])).logits.numpy())
        llm = Llama(model_path=str(demo_gguf()), n_threads=n, n_threads_batch=n, n_ctx=512,
                    logits_all=True, verbose=False)
        llm.eval(tokens)
        for _ in range(3):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        got.append(np.array(llm.scores[:llm.n_tokens]))
        llm.close()
    assert np.array_equal(got[0], got[2]), "torch: 1 and 2 threads differ"
    assert np.array_equal(got[1], got[3]), "llama.cpp: 1 and 2 threads differ"


def test_a_reading_another_thread_just_took_is_not_taken_again(monkeypatch):
    feed(monkeypatch, [(0, 0, 0), (0, 200, 0)])
    share = CpuShare(None, most=2)
    clock = iter([share._at + 5, share._at])  # due when asked, done when the lock is held
    monkeypatch.setattr(cpu_share.time, "monotonic", lambda: next(clock))
    assert share.check() == 2
