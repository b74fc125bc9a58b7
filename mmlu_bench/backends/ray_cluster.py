"""The Ray cluster under `--data-parallel`: join one, or start a local one on 127.0.0.1 only.

Traps, each checked on Ray 2.60:
- A local `ray.init()` listens on every interface and advertises the machine's address. With
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (Ray's switch for single-machine clusters) every listener
  is on 127.0.0.1, so ours sets it. Ray reads the switch once, at import, into a constant that
  alone acts on it: the constant is set too (Ray may have been imported before).
- A driver joining a cluster at 127.0.0.1 rewrites that address to the machine's own unless it
  has the same setting; set here for a loopback address only (a driver that advertised
  127.0.0.1 to a remote cluster could not be reached).
- A `ray start --head` that finds a token (~/.ray/auth_token) requires it from every client,
  and a client sends it only in RAY_AUTH_MODE=token; a client in token mode also joins a
  cluster without auth. So a joining driver turns token mode on when it has a token, as Ray
  does for `auto` but not for an address given to ray.init.
- `ray.init` replaces the driver's SIGTERM handler (exit at once): the runner's own, which keeps
  the records and prints the resume command, is put back.
- Ray reports usage statistics to usage-stats.ray.io by default: off for the cluster we start.
- A new local cluster creates a token for its auth (~/.ray/auth_token) if there is none,
  readable by every user of the machine: made the owner's alone.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, UserError

log = logging.getLogger(__name__)

RAY_INSTALL = "pip install 'mmlu-bench[ray]'"
LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
# Backends that can use a GPU, and whether this run asks them to.
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
GPU_BACKENDS = {"hf": lambda c: c.device != "cpu", "vllm": lambda c: c.device != "cpu",
                "gguf": lambda c: c.n_gpu_layers != 0}


@dataclass(frozen=True)
class Placement:
    """What each replica asks Ray for, and the CPU threads it runs on (None: its default)."""

    num_cpus: int
    num_gpus: int
    threads: int | None

    def public(self) -> dict:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "threads": self.threads}


def address(config) -> str | None:
    """The cluster to join (--ray-address, else RAY_ADDRESS), or None to start a local one."""
    return config.ray_address or os.environ.get("RAY_ADDRESS") or None


def connect(config):
    """Import Ray and connect; (ray, owns): `owns` when we started or joined it here (and so
    disconnect, or stop the local cluster, at the end); not when the caller already had Ray."""
    where = address(config)
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--data-parallel needs Ray: {RAY_INSTALL}") from None
    if ray.is_initialized():
        return ray, False
    quiet = dict(include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=log.isEnabledFor(logging.INFO))
    loopback = where is None or _loopback(_host(where))
    token = Path.home() / ".ray" / "auth_token"
    had_token = token.exists()
    try:
        with _environment(LOCAL_ENV if where is None else {}), _loopback_only(ray, loopback), \
                _signals_kept(), _quiet(AUTH_LOGGER):
            if where is None:
                ray.init(address="local", num_cpus=max(os.cpu_count() or 1,
                                                       config.data_parallel), **quiet)
            else:
                _token_mode()
                ray.init(address=where, **quiet)
    except (ConnectionError, RuntimeError) as e:
        raise UserError(f"cannot join the Ray cluster at {where}: {first_line(e)}; start it "
                        "with `ray start --head`, or leave out --ray-address (and RAY_ADDRESS) "
                        "for a local one.") from None
    if where is None:
        _check_local(ray, token, had_token)
    return ray, True


def _check_local(ray, token: Path, had_token: bool) -> None:
    """The cluster just started listens on 127.0.0.1 only, and its new token is private."""
    if not had_token and token.exists():
        token.chmod(0o600)  # Ray writes it world-readable: anyone on the machine could join
    if not _loopback(_host(ray.get_runtime_context().gcs_address)):
        ray.shutdown()  # never leave a cluster listening beyond this machine
        raise UserError("the local Ray cluster did not bind to 127.0.0.1 only; pass "
                        "--ray-address to use a cluster started with `ray start`.")


@contextmanager
def _environment(env: dict):
    """Ray reads these at import and when it starts its processes; the driver's own
    environment is put back afterwards."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _loopback_only(ray, on: bool):
    """RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, also when Ray was imported before it was set: the
    setting is read into this constant at import, and only through it does it act."""
    from ray._private import ray_constants

    old = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = old and not on
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old


@contextmanager
def _quiet(name: str):
    """A new local cluster turns token auth on and says so at WARNING on every run."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _signals_kept():
    """ray.init sets its own SIGTERM handler (exit at once); the runner's is put back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def _token_mode() -> None:
    """Token auth on when a token is at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token) and RAY_AUTH_MODE is unset: what Ray itself does for `auto` and
    `ray start --address`, not for an address given to ray.init."""
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:  # a Ray without token auth
        return
    auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _host(where: str) -> str:
    """The host of HOST:PORT or ray://HOST:PORT; for `auto`, of the cluster `ray start`
    recorded on this machine (Ray's own file)."""
    if where == "auto":
        from ray._common.utils import get_ray_address_file

        try:
            where = Path(get_ray_address_file(None)).read_text().split()[0]
        except (OSError, IndexError):
            return ""  # none recorded: ray.init says so
    where = where.split("://", 1)[-1]
    host = where.rsplit(":", 1)[0] if where.count(":") == 1 or "]" in where else where
    return host.strip("[]")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def first_line(e: BaseException) -> str:
    """An error's message in one line: Ray's run to many, a traceback's last is its error."""
    text = str(e).strip() or type(e).__name__
    line = text.splitlines()[-1] if "Traceback" in text else text.splitlines()[0]
    return line.rstrip(".")


def nodes(ray) -> list[dict]:
    """Each live node's total resources."""
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def placement(config, n: int, node_resources: list[dict]) -> Placement:
    """What each of `n` replicas asks for. On GPUs: the tensor-parallel size (1 without one).
    On CPUs: as many threads as lets every replica find room on some node (a node of C CPUs
    holds C // t replicas of t), so replicas sharing a machine split its cores instead of
    oversubscribing them (2 replicas on 2 cores: 1 thread each); --threads fixes it."""
    gpus = [int(r.get("GPU", 0)) for r in node_resources]
    wants_gpu = GPU_BACKENDS.get(config.backend, lambda c: False)(config)
    if wants_gpu and (any(gpus) or config.device.startswith("cuda")):
        tp = config.tensor_parallel_size
        room = sum(g // tp for g in gpus)
        if room < n:
            raise UserError(f"--data-parallel {n} with {tp} GPU(s) each needs {n * tp} GPUs "
                            f"({tp} on one node each); the Ray cluster has {sum(gpus)}: use "
                            "fewer replicas, or add nodes.")
        return Placement(1, tp, config.threads)
    cpus = [int(r.get("CPU", 0)) for r in node_resources]
    if config.threads:
        fits = [config.threads] if sum(c // config.threads for c in cpus) >= n else []
    else:
        fits = [t for t in range(max(cpus, default=0), 0, -1) if sum(c // t for c in cpus) >= n]
    if not fits:
        raise UserError(f"--data-parallel {n} needs {n * (config.threads or 1)} CPUs on the "
                        f"Ray cluster, which has {sum(cpus)}: use fewer replicas"
                        f"{' or --threads' if config.threads else ''}, or add nodes.")
    return Placement(fits[0], 0, fits[0])


def disconnect(ray, owns: bool) -> None:
    """Leave the cluster; a local one stops with its driver (gcs_server, raylet, workers)."""
    if owns and ray.is_initialized():
        ray.shutdown()
