"""Real Ray clusters for the tests: on 127.0.0.1 only, and stopped by whoever started them.

`ray stop` stops every Ray process of the user on the machine (other people's clusters too),
so a test stops its own: a `ray start --head --block` by SIGTERM to its pid (it then stops the
processes it started), a local cluster by ending the run that started it. Either way the test
then checks that none of the processes it saw is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")
# What our own clusters run with (backends/ray_cluster.py sets the same for a local one).
CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def tree(pid: int) -> list[psutil.Process]:
    """The process and everything it started, now."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def listeners(procs: list[psutil.Process]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of these processes."""
    out = []
    for p in procs:
        try:
            name = p.name()
            out += [(name, c.laddr.ip, c.laddr.port) for c in p.net_connections("inet")
                    if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return out


def assert_loopback_only(procs: list[psutil.Process]) -> list[tuple[str, str, int]]:
    found = listeners(procs)
    names = {name for name, _, _ in found}
    assert {"gcs_server", "raylet"} <= names, f"no Ray cluster among {found}"
    beyond = [x for x in found if x[1] not in LOOPBACK]
    assert not beyond, f"Ray listening beyond 127.0.0.1: {beyond}"
    return found


def assert_gone(procs: list[psutil.Process], timeout: float = 60) -> None:
    """Every one of these processes has exited (a zombie waiting for its parent counts)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in procs if _alive(p)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not alive, f"left running: {[(p.pid, p.name()) for p in alive]}"


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def header(path: Path) -> dict:
    with path.open() as f:
        return json.loads(f.readline())["header"]


def replica_pids(path: Path) -> list[int]:
    """The replicas' pids, as the run header records them."""
    return [w["pid"] for w in header(path)["backend_info"]["replicas"]["where"]]


def wait_for_records(path: Path, n: int, proc: subprocess.Popen | None = None,
                     timeout: float = 600) -> None:
    """Until `path` holds a header and n records (the run is under way)."""
    deadline = time.monotonic() + timeout
    while not path.exists() or path.read_bytes().count(b"\n") < 1 + n:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended first: {proc.communicate()}")
        assert time.monotonic() < deadline, f"no {n} records in {path} after {timeout} s"
        time.sleep(0.05)


def kill(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


class Head:
    """`ray start --head` in its own process, on 127.0.0.1, with token auth (a token of its
    own, not ~/.ray's), as a user starts a cluster for others to join."""

    def __init__(self, root: Path, num_cpus: int = 4) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = root / "token"
        token.write_text(os.urandom(16).hex())
        # Clients read the token from here; RAY_AUTH_MODE is left to them.
        self.client_env = {"RAY_AUTH_TOKEN_PATH": str(token)}
        env = {**os.environ, **CLUSTER_ENV, **self.client_env, "RAY_AUTH_MODE": "token"}
        env.pop("RAY_ADDRESS", None)
        ray = Path(sys.executable).with_name("ray")
        # A short temp dir: Ray's socket paths must fit in 107 bytes.
        self.temp = Path(os.environ.get("TMPDIR", "/tmp")) / f"rayt{self.port}"
        self.log = (root / "head.log").open("w")
        self.proc = subprocess.Popen(
            [str(ray), "start", "--head", "--block", f"--port={self.port}",
             f"--num-cpus={num_cpus}", "--include-dashboard=false", "--disable-usage-stats",
             f"--temp-dir={self.temp}"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_up(root / "head.log")
        self.procs = tree(self.proc.pid)

    def _wait_up(self, log: Path, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in log.read_text():
            assert self.proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        while not any(n == "raylet" for n, _, _ in listeners(tree(self.proc.pid))):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        procs = tree(self.proc.pid) + self.procs
        self.proc.send_signal(signal.SIGTERM)  # it drains, then stops what it started
        try:
            self.proc.wait(timeout=60)
        finally:
            self.log.close()
        assert_gone(procs)
