"""--data-parallel 2 on the real model (SmolLM2 through transformers, `--model demo`), each
run a fresh process starting its own Ray cluster on 127.0.0.1: records equal, bit for bit, to
the single-process run of the same questions (conftest's zero_shot_run, itself lm-eval's to
1e-4), with a replica SIGKILLed mid-run, and with every replica killed, then resumed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmlu_bench import records

from . import ray_helpers as rh
from .conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_installed")]

SUBJECTS = ("abstract_algebra", "anatomy", "college_physics", "marketing", "virology",
            "world_religions")


def start(out: Path) -> tuple[subprocess.Popen, list[str]]:
    """The run zero_shot_run made (the bundled MMLU), on six subjects, on two replicas."""
    args = ["run", "--model", "demo", "--subjects", ",".join(SUBJECTS), "--limit", "10",
            "--output", str(out), "--no-progress", "--data-parallel", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "mmlu_bench.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_ADDRESS": ""})
    return proc, args


def assert_equal_to_single_process(out: Path, single: Path) -> None:
    header, recs, footer = records.read(out / records.RECORDS)
    expected = [r for r in records.read(single / records.RECORDS)[1] if r.subject in SUBJECTS]
    assert footer is not None and len(recs) == len(expected) == 60
    assert recs == expected  # every log-likelihood bit for bit, none missing or twice
    assert header.backend_info["replicas"]["count"] == 2


def test_a_replica_killed_mid_run_loses_nothing(zero_shot_run, tmp_path):
    proc, _ = start(tmp_path / "dp")
    path = tmp_path / "dp" / records.RECORDS
    rh.wait_for_records(path, 1, proc)
    procs = rh.tree(proc.pid)
    rh.assert_loopback_only(procs)
    rh.kill(rh.replica_pids(path)[:1])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "its units go to the 1 replica(s) left" in err
    rh.assert_gone(procs)
    assert_equal_to_single_process(tmp_path / "dp", zero_shot_run)


def test_every_replica_killed_then_the_same_command_resumes(zero_shot_run, tmp_path):
    proc, args = start(tmp_path / "dp")
    path = tmp_path / "dp" / records.RECORDS
    rh.wait_for_records(path, 1, proc)
    procs = rh.tree(proc.pid)
    rh.kill(rh.replica_pids(path))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.startswith("mmlu-bench: error:")]
    assert len(lines) == 1 and "every Ray replica is gone" in lines[0], err
    assert "rerun the same command to resume" in lines[0]
    rh.assert_gone(procs)
    done = len(records.read(path)[1])
    assert 1 <= done < 60
    proc, _ = start(tmp_path / "dp")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"Scored {60 - done} of 60 questions" in out
    assert_equal_to_single_process(tmp_path / "dp", zero_shot_run)
