"""`--data-parallel N`: N replicas of an in-process backend as Ray actors, a run's units spread
over them.

The pool is a Backend (base.py) that wraps the others: each replica, a Ray actor on the
resources ray_cluster.placement asks for, holds a real backend from backends.create(config).
The driver hands out units (a subject's requests with the qids already recorded), largest
first, one to each idle replica, and yields each batch as it streams back; the runner alone
writes records, so the folder lock, resume and kill -9 safety are the single process's.

A replica that dies (killed, out of memory, its node lost) has its units handed out again
with the qids it had already delivered added to their skip set, exactly as a resume skips
recorded ones: nothing lost, nothing delivered twice. When none is left the run stops with
one line, and the same command resumes it.

Each unit is planned by one replica over the unit's requests, so results do not depend on how
many replicas run or which took a unit. Letter scoring plans per unit in one process too:
the same records. hf: generation plans its batches over the whole run in one process and
per unit here, so padding differs and can tip a greedy near-tie (README).
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from ..errors import UserError
from . import ray_cluster

log = logging.getLogger(__name__)

# Every library's CPU thread pool: set before the backend imports torch, numpy or llama.cpp.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_S = 1.0  # how long the driver blocks at a time (Ctrl-C is seen between waits)


class Replica:
    """The Ray actor: one real backend, answering one unit per call, batch by batch.
    `factory` is backends.create (passed in: this module never imports the table)."""

    def __init__(self, config, threads: int | None, factory) -> None:
        self.config, self.threads, self.factory, self.backend = config, threads, factory, None

    def start(self) -> dict:
        """Load the model (here, not in __init__: an error raised here reaches the driver as
        itself, one from __init__ only as text). Returns what the driver needs to know."""
        config = self.config
        if self.threads:
            os.environ.update({k: str(self.threads) for k in THREAD_VARS})
            # vLLM's CPU engine pins its threads to the first cores of a NUMA node, the same
            # cores in every replica on a machine: replicas sharing it would share those.
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
            if config.threads is None:
                config = replace(config, threads=self.threads)  # llama.cpp's own setting
        self.backend = self.factory(config)
        return {"info": self.backend.info(), "where": self._where(),
                "exact": self.backend.exact}

    def _where(self) -> dict:
        import socket
        import sys

        import ray

        context = ray.get_runtime_context()
        where = {"host": socket.gethostname(), "ip": ray.util.get_node_ip_address(),
                 "pid": os.getpid(), "gpus": context.get_accelerator_ids().get("GPU", [])}
        if "torch" in sys.modules:
            where["threads"] = sys.modules["torch"].get_num_threads()
        elif self.threads:
            where["threads"] = self.threads
        return where

    def chat_renderer(self):
        return self.backend.chat_renderer()

    def answer(self, kind: str, requests, skip: frozenset[str]) -> Iterator[list]:
        run = self.backend.generate_groups if kind == "generate" else self.backend.score_groups
        yield from run([(requests, skip)])


@dataclass(eq=False)
class _Member:
    number: int
    actor: object
    where: dict = field(default_factory=dict)


@dataclass(eq=False)
class _Task:
    member: _Member
    requests: tuple
    skip: frozenset[str]
    got: set[str] = field(default_factory=set)


class RayPool:
    """The Backend protocol over N replicas (see the module docstring): `resume_keys` the
    backend's spec's, `factory` what builds it (backends.create) in each replica."""

    def __init__(self, config, resume_keys: tuple[str, ...], factory) -> None:
        self.config, self.resume_keys, self.factory = config, resume_keys, factory
        self.ray, self._owns = ray_cluster.connect(config)
        self.members: list[_Member] = []
        self.lost: list[str] = []  # why replicas went, in order
        self.redone: list[tuple[int, int]] = []  # units handed out again: (size, delivered)
        try:
            self._start(config)
        except BaseException:
            self.close()
            raise

    def _start(self, config) -> None:
        ray, n = self.ray, config.data_parallel
        self.placement = ray_cluster.placement(config, n, ray_cluster.nodes(ray))
        inner = replace(config, data_parallel=None, ray_address=None)
        actor = ray.remote(Replica).options(num_cpus=self.placement.num_cpus,
                                            num_gpus=self.placement.num_gpus,
                                            max_restarts=0, max_task_retries=0)
        self.members = [_Member(i + 1, actor.remote(inner, self.placement.threads,
                                                     self.factory)) for i in range(n)]
        started = self._get([m.actor.start.remote() for m in self.members])
        for m, s in zip(self.members, started, strict=True):
            m.where = s["where"]
        # Its name, capabilities and resume keys are the backend's spec's; `exact` an
        # instance's (ollama: is exact on the pulled file, not through the server).
        self.exact, self._info = started[0]["exact"], started[0]["info"]
        _check_same(self.resume_keys, [s["info"] for s in started])

    def _get(self, refs):
        """ray.get, with a backend's own error (a UserError) raised as itself."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, UserError):
                raise e.cause from None
            raise
        except self.ray.exceptions.RayActorError as e:
            raise UserError(f"a Ray replica died while loading the model: "
                            f"{ray_cluster.first_line(e)}") from None

    def info(self) -> dict:
        """The first replica's info (all agree on what identifies the results), and where
        the replicas ran: the cluster's address, whether it was started for this run."""
        return {**self._info, "replicas": {
            "count": len(self.members), "cluster": self.ray.get_runtime_context().gcs_address,
            "started": ray_cluster.address(self.config) is None and self._owns,
            "each": self.placement.public(), "where": [m.where for m in self.members]}}

    def chat_renderer(self):
        return self._get(self.members[0].actor.chat_renderer.remote())

    def score_groups(self, groups: Iterable) -> Iterator[list]:
        return self._spread("score", groups)

    def generate_groups(self, groups: Iterable) -> Iterator[list]:
        return self._spread("generate", groups)

    def _spread(self, kind: str, groups: Iterable) -> Iterator[list]:
        """Units to idle replicas, largest first; batches as they come, each qid once."""
        def left(group) -> int:
            return sum(r.qid not in group[1] for r in group[0])

        todo = deque(sorted(((tuple(r), s) for r, s in groups if left((r, s))),
                            key=left, reverse=True))
        running: dict = {}  # the replica's streaming generator -> _Task
        delivered: set[str] = set()
        while todo or running:
            self._hand_out(kind, todo, running)
            if not running:
                raise self._all_gone()
            ready, _ = self.ray.wait(list(running), num_returns=1, timeout=WAIT_S)
            for gen in ready:
                if gen not in running:  # its replica went while an earlier one was read
                    continue
                batch = self._next(gen, running, todo)
                fresh = [s for s in batch if s.qid not in delivered]
                delivered.update(s.qid for s in fresh)
                if fresh:
                    yield fresh

    def _hand_out(self, kind: str, todo: deque, running: dict) -> None:
        busy = {id(t.member) for t in running.values()}
        for m in self.members:
            if todo and id(m) not in busy:
                requests, skip = todo.popleft()
                gen = m.actor.answer.options(num_returns="streaming").remote(kind, requests,
                                                                              skip)
                running[gen] = _Task(m, requests, skip)

    def _next(self, gen, running: dict, todo: deque) -> list:
        """The generator's next batch ([] when it ended or its replica is gone)."""
        task = running[gen]
        try:
            batch = self.ray.get(next(gen))
        except StopIteration:
            del running[gen]
            return []
        except self.ray.exceptions.RayTaskError as e:
            # The backend's own error: the same on any replica, so not retried.
            raise (e.cause if isinstance(e.cause, UserError) else e) from None
        except self.ray.exceptions.RayActorError as e:
            self._drop(task.member, e, running, todo)
            return []
        task.got.update(s.qid for s in batch)
        return batch

    def _drop(self, member: _Member, error: Exception, running: dict, todo: deque) -> None:
        """A replica is gone: its units back to the front of the queue, less what it gave."""
        why = f"replica {member.number} (pid {member.where.get('pid')} on " \
              f"{member.where.get('host')}): {ray_cluster.first_line(error)}"
        self.lost.append(why)
        self.members.remove(member)
        for gen, task in list(running.items()):
            if task.member is member:
                del running[gen]
                self.redone.append((len(task.requests), len(task.got)))
                todo.appendleft((task.requests, task.skip | frozenset(task.got)))
        if self.members:
            log.warning("%s; its units go to the %d replica(s) left", why, len(self.members))
        self._kill(member)

    def _all_gone(self) -> UserError:
        return UserError(f"every Ray replica is gone (the last: {self.lost[-1]}); everything "
                         "scored so far is recorded: rerun the same command to resume.")

    def _kill(self, member: _Member) -> None:
        try:
            self.ray.kill(member.actor, no_restart=True)
        except Exception:  # already gone with its node or cluster
            pass

    def close(self) -> None:
        for m in self.members:
            self._kill(m)
        self.members = []
        ray_cluster.disconnect(self.ray, self._owns)


def _check_same(keys: tuple[str, ...], infos: list[dict]) -> None:
    """Replicas that differ in what identifies the results (a device, a model file) would
    mix two runs in one."""
    for key in keys:
        values = {json.dumps(i.get(key), sort_keys=True) for i in infos}
        if len(values) > 1:
            raise UserError(f"the Ray replicas differ in {key} ({', '.join(sorted(values))}): "
                            "give every node the same model files and devices, or pin "
                            "--device.")
