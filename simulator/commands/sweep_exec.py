"""Where sweep points run: in this process one after another, or as Ray tasks (local or on a cluster)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from simulator.errors import InputError

__all__ = ["PointJob", "PointResult", "run_point", "LocalExecutor", "RayExecutor", "make_executor", "one_line"]

RAY_MISSING = (
    "--executor ray needs Ray, which is not installed: pip install -e '.[ray]' "
    "(or pip install 'ray>=2.9'), or use --executor local"
)


@dataclass(frozen=True)
class PointJob:
    """What a worker needs to run one point: plain paths and strings, no torch objects."""

    point: str  # the point's id
    base: str  # absolute path of the base scenario
    overrides: tuple[str, ...]
    out: str  # absolute path of the point's run folder
    resume: bool = False  # the folder holds an unfinished run of this very scenario
    overwrite: bool = False  # the folder holds something else: replace it
    threads: int | None = None  # torch intra-op threads for this point; None: leave the process's setting


@dataclass(frozen=True)
class PointResult:
    point: str
    ok: bool
    error: str = ""  # one line
    summary: dict[str, Any] | None = None  # summary.json's content


def one_line(err: BaseException) -> str:
    """An exception as one line: an InputError as the CLI prints it, anything else with its type."""
    text = err.one_line() if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def run_point(job: PointJob) -> PointResult:
    """Load the point's scenario and run it into its folder; any failure comes back as a one-line error."""
    import torch

    from simulator.commands.runner import run_scenario
    from simulator.config.scenario import load_scenario

    threads = torch.get_num_threads()
    if job.threads is not None:
        torch.set_num_threads(job.threads)
    try:
        rs = load_scenario(job.base, job.overrides)
        summary = run_scenario(rs, Path(job.out), resume=job.resume, overwrite=job.overwrite, progress=False)
        return PointResult(job.point, True, summary=summary)
    except Exception as err:  # a failed point is recorded, the sweep goes on
        return PointResult(job.point, False, error=one_line(err))
    finally:
        torch.set_num_threads(threads)


_CONNECT_TIMEOUT_S = 10.0
_ERROR_MAX = 400  # Ray's own errors carry whole remote tracebacks
OnDone = Callable[[PointResult], None]


class LocalExecutor:
    """In this process, one point after another, with the process's torch thread setting; no Ray import."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def describe(self) -> str:
        return "running in this process, one point at a time"

    def run(self, jobs: Sequence[PointJob], on_done: OnDone) -> None:
        for job in jobs:
            on_done(run_point(job))


class RayExecutor:
    """Each point a Ray task (one CPU, one torch thread) on a local Ray sized to the machine or a running cluster."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise InputError(RAY_MISSING, key="--executor") from None
        self._ray = ray
        self.address = address
        self.workers = workers
        self._started = False

    def describe(self) -> str:
        where = f"running on the Ray cluster at {self.address}" if self.address else "running on a local Ray"
        cpus = int(self._ray.cluster_resources().get("CPU", 0)) if self._ray.is_initialized() else None
        n = self.workers
        limit = f", at most {n} point{'s' if n != 1 else ''} at once" if self.address and n else ""
        return f"{where} ({cpus} CPUs{limit})" if cpus is not None else where

    def start(self) -> None:
        ray = self._ray
        if ray.is_initialized():  # e.g. a driver script that set Ray up itself: use it, leave it running
            return
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
            "ignore_reinit_error": True,
        }
        if self.address:
            _check_reachable(self.address)
        try:
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                # "local": always a new Ray of our own, never a cluster that RAY_ADDRESS or an earlier
                # `ray start` on this machine points at
                ray.init(address="local", num_cpus=self.workers or os.cpu_count() or 1, **kwargs)
        except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError, ... for a bad address
            hint = (
                (
                    "; a cluster with token authentication also needs RAY_AUTH_MODE=token and its token here "
                    "(ray get-auth-token on the head)"
                )
                if self.address
                else ""
            )
            raise InputError(
                f"cannot start Ray: {one_line(err)[:_ERROR_MAX]}{hint}",
                key="--address" if self.address else "--executor",
            ) from None
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def run(self, jobs: Sequence[PointJob], on_done: OnDone) -> None:
        """Submit every job (after start()); report each result as it arrives, in completion order."""
        ray = self._ray
        # No retries: a point whose worker died is recorded with Ray's error (the real cause); retrying it blindly
        # would meet the half-written run folder. The next `splitee sweep` resumes it from its checkpoint.
        task = ray.remote(num_cpus=1, max_retries=0)(run_point)
        # a local Ray schedules by its own CPU count; on a cluster --workers caps the points in flight
        limit = self.workers if self.address and self.workers else max(1, len(jobs))
        queue = [replace(job, threads=1) for job in jobs]
        pending: dict[Any, PointJob] = {}
        while queue or pending:
            while queue and len(pending) < limit:
                job = queue.pop(0)
                pending[task.remote(job)] = job
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as err:  # the worker died (out of memory, node lost): the point failed
                    result = PointResult(job.point, False, error=f"Ray: {one_line(err)[:_ERROR_MAX]}")
                on_done(result)


def _check_reachable(address: str) -> None:
    """A HOST:PORT nobody listens on is an input error now: Ray itself would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # `auto`, `ray://...`: left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise InputError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); start one with "
            "`ray start --head` on that machine, or leave out --address for a local Ray",
            key="--address",
        ) from None


def make_executor(kind: str, address: str | None, workers: int | None) -> LocalExecutor | RayExecutor:
    """The executor the command line asks for; bad combinations are input errors."""
    if workers is not None and workers < 1:
        raise InputError(f"must be at least 1, got {workers}", key="--workers")
    if kind == "local":
        if address:
            raise InputError("only with --executor ray (local runs in this process)", key="--address")
        if workers is not None:
            raise InputError("only with --executor ray (local runs one point after another)", key="--workers")
        return LocalExecutor()
    return RayExecutor(address, workers)
