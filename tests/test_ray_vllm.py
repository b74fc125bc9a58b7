"""--data-parallel 2 on vllm: (vLLM's CPU engine in each Ray replica, the real SmolLM2 as an
fp32 transformers folder), a fresh process starting its own cluster on 127.0.0.1: lm-eval
0.4.13's own predictions and log-likelihoods to 1e-4, as one vLLM process gives them
(test_vllm.py), and nothing of the cluster or the engines left afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from mmlu_bench import records

from . import ray_helpers as rh
from .conftest import ROOT, VLLM_ENV, worst_against_reference

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_installed", "vllm_installed")]

SUBJECTS = ("abstract_algebra", "anatomy", "marketing", "virology")


def test_replicas_of_the_vllm_engine_give_lm_evals_numbers(smollm2_folder, tmp_path):
    out = tmp_path / "dp"
    args = ["run", "--model", f"vllm:{smollm2_folder}", "--vllm-arg", "enforce_eager=true",
            "--subjects", ",".join(SUBJECTS), "--limit", "10", "--output", str(out),
            "--no-progress", "--data-parallel", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "mmlu_bench.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **VLLM_ENV, "RAY_ADDRESS": ""})
    path = out / records.RECORDS
    rh.wait_for_records(path, 1, proc, timeout=600)
    procs = rh.tree(proc.pid)  # the cluster, the replicas and their engines' processes
    # Both engines are up (the replicas load before any unit goes out). vLLM would pin both
    # replicas' model threads to the same first core; each runs where the OS puts it instead.
    workers = [p for p in procs if p.name() == "VLLM::Worker"]
    assert len(workers) == 2, [p.name() for p in procs]
    every = sorted(os.sched_getaffinity(0))
    assert all(psutil.Process(t.id).cpu_affinity() == every
               for w in workers for t in w.threads())
    rh.assert_loopback_only(procs)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    rh.assert_gone(procs)

    header, recs, footer = records.read(path)
    assert footer is not None and len(recs) == len({r.qid for r in recs}) == 40
    assert {r.subject for r in recs} == set(SUBJECTS)
    worst = worst_against_reference(recs)
    assert worst <= 1e-4, f"max |loglikelihood difference| {worst:.2e}"
    info = header.backend_info
    assert header.backend == "vllm" and info["engine_args"] == {"enforce_eager": True}
    replicas = info["replicas"]
    assert replicas["count"] == 2 and replicas["started"]
    assert len({w["pid"] for w in replicas["where"]}) == 2
