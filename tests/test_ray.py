"""--data-parallel on real Ray clusters, with the fake backend (slowed by its latency option so
things happen mid-run): equal records, replicas killed mid-run, the local cluster's network
hygiene and clean stop, joining a `ray start --head` cluster. On the real model:
test_ray_hf.py."""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from unittest import mock

import pytest

from mmlu_bench import backends, cli, records
from mmlu_bench.backends import fake, ray_cluster
from mmlu_bench.backends.ray_pool import THREAD_VARS, RayPool, Replica, _Member, _Task
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import ConfigError, UserError

from . import ray_helpers as rh
from .conftest import ROOT

pytestmark = pytest.mark.usefixtures("ray_installed")

SUBJECTS = "anatomy,virology,marketing,college_physics,astronomy,nutrition,sociology,prehistory"
MODEL = "fake:demo?latency=0.02"  # 20 ms a question: 160 questions take 3.2 s on one replica


def argv(out: Path, data: Path, *extra: str, model: str = MODEL) -> list[str]:
    return ["run", "--model", model, "--data-dir", str(data), "--subjects", SUBJECTS,
            "--limit", "20", "--output", str(out), "--no-progress", *extra]


def record_lines(out: Path) -> list[bytes]:
    """A finished run's records, byte for byte, without its header and footer."""
    lines = (out / records.RECORDS).read_bytes().splitlines()
    assert b'"footer"' in lines[-1]
    return lines[1:-1]


@pytest.fixture(scope="module")
def single(tmp_path_factory, mmlu_dir) -> Path:
    """One process, no Ray: what every run here must equal."""
    out = tmp_path_factory.mktemp("single") / "run"
    assert cli.main(argv(out, mmlu_dir, model="fake:demo")) == 0
    return out


@pytest.fixture(scope="module")
def cluster():
    """A local cluster in this process, started as --data-parallel starts one, shared by the
    in-process tests (a run finds Ray initialized and leaves it up)."""
    ray, owns = ray_cluster.connect(RunConfig("demo", "fake", data_parallel=4))
    assert owns
    procs = rh.tree(os.getpid())[1:]
    rh.assert_loopback_only(procs)
    yield ray
    ray.shutdown()
    rh.assert_gone(procs)


def test_importing_mmlu_bench_does_not_import_ray():
    code = ("import sys, mmlu_bench, mmlu_bench.cli, mmlu_bench.runner, mmlu_bench.backends\n"
            "from mmlu_bench.config import RunConfig\n"
            "RunConfig.from_spec('fake:x', data_parallel=2)\n"
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_without_ray_the_flag_says_how_to_install(monkeypatch, capsys, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else find_spec(name, *a))
    assert cli.main(["run", "--model", "fake:x", "--data-parallel", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "mmlu-bench: error: --data-parallel needs Ray: pip install 'mmlu-bench[ray]'\n"
    monkeypatch.setitem(sys.modules, "ray", None)  # installed, yet it cannot be imported
    with pytest.raises(ConfigError, match=r"pip install 'mmlu-bench\[ray\]'"):
        ray_cluster.connect(RunConfig("x", "fake", data_parallel=2))


@pytest.mark.parametrize("spec, settings, message", [
    ("fake:x", {"ray_address": "auto"}, "--ray-address needs --data-parallel"),
    ("fake:x", {"data_parallel": 0}, "--data-parallel 0: give a number of replicas"),
    ("openai:http://127.0.0.1:1/v1", {"data_parallel": 2, "model_name": "m"}, "--concurrency"),
    ("ollama:smollm2", {"data_parallel": 2}, "talks to a server"),
])
def test_settings_that_cannot_work_are_refused(spec, settings, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_spec(spec, **settings)


def test_fake_latency_option_changes_the_time_not_the_answers(tmp_path, mmlu_dir):
    assert fake.parse_spec("demo?latency=50ms") == ("demo", 0.05)
    assert fake.parse_spec("demo?latency=0.2") == ("demo", 0.2)
    with pytest.raises(ConfigError, match="latency=SECONDS"):
        fake.parse_spec("demo?speed=3")
    outs = [tmp_path / "a", tmp_path / "b"]
    for out, model in zip(outs, ["fake:demo", "fake:demo?latency=1ms"], strict=True):
        assert cli.main(argv(out, mmlu_dir, "--subjects", "anatomy", model=model)) == 0
    assert record_lines(outs[0]) == record_lines(outs[1])


@pytest.mark.parametrize("spec, settings, nodes, n, expected", [
    ("fake:x", {}, [{"CPU": 2}], 2, (1, 0, 1)),  # a 2-core laptop: a core each
    ("fake:x", {}, [{"CPU": 2}], 1, (2, 0, 2)),
    ("hf:m", {}, [{"CPU": 16}, {"CPU": 4}], 2, (8, 0, 8)),  # both fit on the big node
    ("hf:m", {}, [{"CPU": 16}, {"CPU": 16}], 4, (8, 0, 8)),
    ("hf:m", {"threads": 3}, [{"CPU": 8}], 2, (3, 0, 3)),
    ("hf:m", {}, [{"CPU": 8, "GPU": 2}], 2, (1, 1, None)),  # a GPU each
    ("hf:m", {"device": "cpu"}, [{"CPU": 8, "GPU": 2}], 2, (4, 0, 4)),
    ("gguf:m.gguf", {}, [{"CPU": 8, "GPU": 2}], 2, (4, 0, 4)),  # no layers offloaded
    ("gguf:m.gguf", {"n_gpu_layers": 99}, [{"CPU": 8, "GPU": 2}], 2, (1, 1, None)),
    ("fake:x", {}, [{"CPU": 8, "GPU": 2}], 2, (4, 0, 4)),
    ("vllm:m", {"tensor_parallel_size": 2}, [{"CPU": 8, "GPU": 4}] * 2, 4, (1, 2, None)),
    ("vllm:m", {}, [{"CPU": 8}], 2, (4, 0, 4)),  # vLLM's CPU build
])
def test_each_replica_asks_for_its_share(spec, settings, nodes, n, expected):
    config = RunConfig.from_spec(spec, **settings)
    p = ray_cluster.placement(config, n, nodes)
    assert (p.num_cpus, p.num_gpus, p.threads) == expected


@pytest.mark.parametrize("spec, settings, nodes, n, message", [
    ("fake:x", {}, [{"CPU": 2}], 3, "--data-parallel 3 needs 3 CPUs on the Ray cluster, "
                                     "which has 2"),
    ("hf:m", {"threads": 3}, [{"CPU": 4}], 2, "needs 6 CPUs"),
    ("hf:m", {}, [{"CPU": 8, "GPU": 2}], 3, "needs 3 GPUs .* the Ray cluster has 2"),
    ("vllm:m", {"tensor_parallel_size": 4}, [{"CPU": 8, "GPU": 2}] * 2, 1,
     r"with 4 GPU\(s\) each needs 4 GPUs \(4 on one node each\)"),
])
def test_a_cluster_too_small_is_one_line(spec, settings, nodes, n, message):
    with pytest.raises(UserError, match=message):
        ray_cluster.placement(RunConfig.from_spec(spec, **settings), n, nodes)


@pytest.mark.parametrize("where, loopback", [
    ("127.0.0.1:6379", True), ("localhost:6379", True), ("[::1]:6379", True),
    ("ray://127.0.0.1:10001", True), ("10.0.0.1:6379", False), ("head.example:6379", False),
])
def test_loopback_addresses_are_recognised(where, loopback):
    assert ray_cluster._loopback(ray_cluster._host(where)) is loopback


def test_units_of_a_lost_replica_come_back_less_what_it_delivered():
    pool = RayPool.__new__(RayPool)
    pool.ray = mock.Mock()
    a, b = _Member(1, "actor-a", {"pid": 1, "host": "h"}), _Member(2, "actor-b")
    pool.members, pool.lost, pool.redone = [a, b], [], []
    unit = tuple(mock.Mock(qid=f"u/{i}") for i in range(4))
    running = {"gen-a": _Task(a, unit, frozenset({"u/0"}), {"u/1"}),
               "gen-b": _Task(b, unit, frozenset())}
    todo: deque = deque()
    pool._drop(a, RuntimeError("killed\nmore"), running, todo)
    assert list(todo) == [(unit, frozenset({"u/0", "u/1"}))]
    assert list(running) == ["gen-b"] and pool.members == [b]
    assert pool.lost == ["replica 1 (pid 1 on h): killed"]
    pool.ray.kill.assert_called_once_with("actor-a", no_restart=True)


def test_a_replica_runs_its_share_of_threads_unpinned():
    """vLLM's CPU engine would pin every replica's threads to the same first cores."""
    made = []
    replica = Replica(RunConfig("m", "fake"), 3, lambda c: made.append(c) or fake.FakeBackend(c))
    with mock.patch.dict(os.environ), mock.patch.object(Replica, "_where", return_value={}):
        os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
        replica.start()
        assert {os.environ[v] for v in THREAD_VARS} == {"3"}
        assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert made[0].threads == 3


@pytest.mark.parametrize("extra", [(), ("--format", "generative"), ("--apply-chat-template",)],
                         ids=["plain", "generative", "chat"])
def test_replicas_give_the_single_process_records(extra, cluster, single, tmp_path, mmlu_dir):
    base = tmp_path / "single"
    if extra:  # the plain single-process run is the module's
        assert cli.main(argv(base, mmlu_dir, *extra, model="fake:demo")) == 0
    out = tmp_path / "dp"
    assert cli.main(argv(out, mmlu_dir, *extra, "--data-parallel", "2")) == 0
    assert record_lines(out) == record_lines(base if extra else single)
    replicas = rh.header(out / records.RECORDS)["backend_info"]["replicas"]
    assert replicas["count"] == 2 and replicas["cluster"].startswith("127.0.0.1:")
    assert not replicas["started"]  # the module's cluster, not one of its own
    assert {w["ip"] for w in replicas["where"]} == {"127.0.0.1"}
    each = int(cluster.cluster_resources()["CPU"]) // 2  # the cluster's CPUs split 2 ways
    assert replicas["each"] == {"num_cpus": each, "num_gpus": 0, "threads": each}
    assert [w["threads"] for w in replicas["where"]] == [each, each]


def _kill_when_recorded(path: Path, n: int, which: slice) -> threading.Thread:
    def kill() -> None:
        rh.wait_for_records(path, n, timeout=120)
        rh.kill(rh.replica_pids(path)[which])

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_replica_killed_mid_run_loses_nothing(cluster, single, tmp_path, mmlu_dir, caplog):
    out = tmp_path / "dp"
    args = argv(out, mmlu_dir, "--data-parallel", "2")
    config = RunConfig.from_spec(MODEL, data_dir=str(mmlu_dir), subjects=SUBJECTS, limit=20,
                                 output=str(out), progress=False, data_parallel=2)
    pool = backends.create(config)
    killer = _kill_when_recorded(out / records.RECORDS, 16, slice(0, 1))
    with mock.patch.object(backends, "create", return_value=pool), \
            caplog.at_level(logging.WARNING):
        assert cli.main(args) == 0
    killer.join()
    assert record_lines(out) == record_lines(single)  # all 160, none twice, all equal
    assert len(pool.lost) == 1 and pool.lost[0].startswith("replica 1 (pid ")
    assert pool.redone, "the killed replica's unit was not handed out again"
    assert "its units go to the 1 replica(s) left" in caplog.text


def test_every_replica_killed_stops_with_one_line_then_resumes(cluster, single, tmp_path,
                                                                mmlu_dir, capsys):
    out = tmp_path / "dp"
    args = argv(out, mmlu_dir, "--data-parallel", "2")
    killer = _kill_when_recorded(out / records.RECORDS, 16, slice(None))
    assert cli.main(args) == 2
    killer.join()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mmlu-bench: error: every Ray replica is gone (the last: "
                              "replica "), err
    assert err[-1].endswith("everything scored so far is recorded: rerun the same command to "
                            "resume.")
    header, recs, footer = records.read(out / records.RECORDS)
    assert footer is None and 16 <= len(recs) < 160
    assert cli.main(args) == 0
    assert record_lines(out) == record_lines(single)


def test_a_backend_error_in_the_replicas_is_its_own_line(cluster, tmp_path, mmlu_dir, capsys):
    assert cli.main(argv(tmp_path / "x", mmlu_dir, "--data-parallel", "2",
                         model="fake:demo?speed=3")) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmlu-bench: error: fake:demo?speed=3: the one option is latency=")
    assert err.count("\n") == 1


def _watch(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    out = Path(args[args.index("--output") + 1])
    proc = subprocess.Popen([sys.executable, "-m", "mmlu_bench.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    return proc, out / records.RECORDS


def test_own_local_cluster_is_loopback_only_and_stops_with_the_run(single, tmp_path, mmlu_dir):
    """A fresh process starts its own cluster: on 127.0.0.1 only, its new auth token private;
    SIGTERM mid-run keeps the records, prints the resume command and leaves no Ray process;
    the resume completes."""
    args = argv(tmp_path / "dp", mmlu_dir, "--data-parallel", "2")
    home = {"HOME": str(tmp_path / "home")}  # no token there yet: Ray makes one
    proc, path = _watch(args, home)
    rh.wait_for_records(path, 16, proc, timeout=180)
    procs = rh.tree(proc.pid)
    found = rh.assert_loopback_only(procs)
    assert rh.header(path)["backend_info"]["replicas"]["started"]
    assert {pid for pid in rh.replica_pids(path)} <= {p.pid for p in procs}, found
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Interrupted (SIGTERM)" in err
    assert err.strip().splitlines()[-1].strip() == "mmlu-bench " + shlex.join(args)
    rh.assert_gone(procs)
    assert records.read(path)[2] is None
    assert (tmp_path / "home" / ".ray" / "auth_token").stat().st_mode & 0o777 == 0o600
    proc, path = _watch(args, home)
    rh.wait_for_records(path, 1, proc, timeout=180)
    procs = rh.tree(proc.pid)
    assert proc.wait(timeout=300) == 0, proc.communicate()
    rh.assert_gone(procs)
    assert record_lines(path.parent) == record_lines(single)


def test_kill_9_keeps_the_records_and_its_cluster_goes_with_it(cluster, single, tmp_path,
                                                                mmlu_dir):
    """kill -9 of a run that started its own cluster: gcs_server, raylet and the replicas go
    with it (Ray ties them to their driver); Ray's two agents notice and exit about a minute
    later (their last report to the dead GCS times out). The same command resumes (here in
    this process, on the module's cluster)."""
    args = argv(tmp_path / "dp", mmlu_dir, "--data-parallel", "2")
    proc, path = _watch(args)
    rh.wait_for_records(path, 16, proc, timeout=180)
    procs = rh.tree(proc.pid)[1:]
    proc.kill()
    proc.wait()
    core = [p for p in procs if not p.name().endswith("Agent")]
    assert {"gcs_server", "raylet"} <= {p.name() for p in core}
    rh.assert_gone(core, timeout=20)
    assert 16 <= len(records.read(path)[1]) < 160
    assert cli.main(args) == 0
    assert record_lines(path.parent) == record_lines(single)
    rh.assert_gone(procs, timeout=150)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    started = rh.Head(tmp_path_factory.mktemp("head"))
    try:
        rh.assert_loopback_only(started.procs)
        yield started
    finally:
        started.stop()


@pytest.mark.parametrize("how", ["--ray-address", "RAY_ADDRESS"])
def test_joins_a_cluster_started_by_ray_start(how, head, single, tmp_path, mmlu_dir):
    out = tmp_path / "dp"
    flag = ["--ray-address", head.address] if how == "--ray-address" else []
    env = {**head.client_env, **({"RAY_ADDRESS": head.address} if not flag else {})}
    proc, path = _watch(argv(out, mmlu_dir, "--data-parallel", "2", *flag), env)
    rh.wait_for_records(path, 1, proc, timeout=180)
    # The replicas run in the head's cluster (its raylet started them); no cluster of its own.
    assert set(rh.replica_pids(path)) <= {p.pid for p in rh.tree(head.proc.pid)}
    assert not {"gcs_server", "raylet"} & {p.name() for p in rh.tree(proc.pid)}
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert record_lines(out) == record_lines(single)
    replicas = rh.header(path)["backend_info"]["replicas"]
    assert (replicas["cluster"], replicas["started"]) == (head.address, False)
    rh.assert_loopback_only(rh.tree(head.proc.pid))
