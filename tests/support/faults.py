"""Fault injection helpers: real worker processes, a private Redis, a failing storage, the
broker as a worker sees it, and the audit that every fault test ends with.

The audit is the contract of the "prove it" issue: every job ends in a final state (or waits
for an operator) with a reason, nothing is billed twice, and every transition was legal.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.core.files.storage import FileSystemStorage
from django.db import connection
from django.db.models import Count, Sum

from tests.support.qcluster import database_url, start_qcluster, stop, worker_env  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]

# States a job may rest in: the terminal ones, and in_review (an operator decides).
RESTING_STATES = frozenset({"succeeded", "failed", "canceled", "blocked", "in_review"})


# --- databases and workers ---------------------------------------------------------------------


def database_vendor() -> str:
    return connection.vendor  # "sqlite" or "postgresql"


# One set of helpers for real qcluster processes (also used by test_qcluster and test_scale_out).
start_worker = start_qcluster
stop_worker = stop


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own on a free port, without persistence (like CI's), so
    that restarting it loses every queued task, as a real restart of such a server does."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def restart(self, *, down_for_s: float = 0.5) -> None:
        self.stop(signal.SIGTERM)
        time.sleep(down_for_s)
        self.start()
        self.restarts += 1


# --- the broker, as a worker sees it --------------------------------------------------------


@contextlib.contextmanager
def broker(redis_url: str | None):
    """Enqueue to a real broker instead of running tasks inline: Redis at ``redis_url``, or
    the ORM broker on the test database when it is None."""
    from django_q.conf import Conf

    previous = (Conf.SYNC, Conf.REDIS, Conf.ORM, Conf.POLL)
    Conf.SYNC = False
    Conf.REDIS, Conf.ORM = (redis_url, None) if redis_url else (None, "default")
    Conf.POLL = 0.05
    try:
        yield
    finally:
        Conf.SYNC, Conf.REDIS, Conf.ORM, Conf.POLL = previous


def take_tasks(queue: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """Take the tasks waiting on ``queue`` off the broker, as django-q's pusher does (taken is
    gone: with Redis there is no acknowledgement to wait for, so the ORM rows are deleted too).
    Never blocks."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    queue_broker = get_broker(queue)
    tasks: list[dict[str, Any]] = []
    while len(tasks) < limit and queue_broker.queue_size():
        for ack_id, payload in queue_broker.dequeue() or []:
            if ack_id is not None:
                queue_broker.acknowledge(ack_id)
            tasks.append(SignedPackage.loads(payload))
    return tasks


def execute(task: dict[str, Any]) -> Any:
    from django.utils.module_loading import import_string

    func = task["func"]
    func = import_string(func) if isinstance(func, str) else func
    return func(*task.get("args", ()), **task.get("kwargs", {}))


def run_queue(queue: str) -> int:
    """Run every task waiting on ``queue`` here, inline, until the queue is empty."""
    done = 0
    while batch := take_tasks(queue):
        for task in batch:
            execute(task)
            done += 1
    return done


class ResendCounter(logging.Handler):
    """Counts the reaper's resends of lost tasks (it logs each one) while installed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "resending" in record.getMessage()

    def __enter__(self) -> ResendCounter:
        logging.getLogger("generation.tasks").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("generation.tasks").removeHandler(self)


# --- storage that fails -----------------------------------------------------------------------


class FailingStorage(FileSystemStorage):
    """The local file system, except that the next ``fail_writes`` saves whose key contains
    ``fail_matching`` write half their bytes and then raise ENOSPC, as a full disk does.

    ``saves`` lists every key asked for; ``failed`` the ones that failed.
    """

    def __init__(self, *, fail_writes: int = 0, fail_matching: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.fail_writes = fail_writes
        self.fail_matching = fail_matching
        self.saves: list[str] = []
        self.failed: list[str] = []

    def _save(self, name: str, content: Any) -> str:
        self.saves.append(name)
        if self.fail_writes > 0 and self.fail_matching in name:
            self.fail_writes -= 1
            self.failed.append(name)
            data = content.read()
            path = Path(self.path(name))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device (injected)", name)
        return super()._save(name, content)


# --- the audit --------------------------------------------------------------------------------


def audit(job_ids: list[Any] | None = None) -> dict[str, Any]:
    """Counts over the jobs (all of them, or ``job_ids``) that every fault test asserts on."""
    from billing.models import UsageEvent
    from generation.models import TRANSITIONS, Job, JobTransition

    jobs = Job.objects.all()  # unscoped: a test's audit over every tenant
    if job_ids is not None:
        jobs = jobs.filter(pk__in=job_ids)
    rows = list(jobs.values("pk", "state", "error_code", "error_message", "shots", "attempts"))
    ids = [r["pk"] for r in rows]
    usage = UsageEvent.objects.filter(job_id__in=ids, kind=UsageEvent.Kind.USAGE)
    double_billed = (
        usage.values("job_id", "stage", "shot_index").annotate(n=Count("id")).filter(n__gt=1)
    )
    billed_shots: dict[Any, set] = {}
    for job_id, shot in usage.filter(stage="generate").values_list("job_id", "shot_index"):
        billed_shots.setdefault(job_id, set()).add(shot)
    history: dict[Any, list[tuple[str, str]]] = {}
    for job_id, from_state, to_state in (
        JobTransition.objects.filter(job_id__in=ids)
        .order_by("id")
        .values_list("job_id", "from_state", "to_state")
    ):
        history.setdefault(job_id, []).append((from_state, to_state))

    def legal(row) -> bool:
        moves = history.get(row["pk"], [])
        if not moves or moves[0][0] != "" or moves[-1][1] != row["state"]:
            return False
        previous = moves[0][1]
        for from_state, to_state in moves[1:]:
            if from_state != previous or to_state not in TRANSITIONS[from_state]:
                return False
            previous = to_state
        return True

    illegal = [r["pk"] for r in rows if not legal(r)]
    states = Counter(r["state"] for r in rows)
    failed = [r for r in rows if r["state"] == "failed"]
    succeeded = [r for r in rows if r["state"] == "succeeded"]
    # Net of refunds and corrections: a failure is a platform fault, and those are not billed.
    failed_net_ms = dict(
        UsageEvent.objects.filter(job_id__in=[r["pk"] for r in failed])
        .values_list("job_id")
        .annotate(ms=Sum("milliseconds"))
    )
    return {
        "jobs": len(rows),
        "states": dict(sorted(states.items())),
        "succeeded": states.get("succeeded", 0),
        "failed": states.get("failed", 0),
        "failed_by_code": dict(sorted(Counter(r["error_code"] for r in failed).items())),
        "lost": sum(1 for r in rows if r["state"] not in RESTING_STATES),
        "failed_without_reason": sum(
            1 for r in failed if not (r["error_code"] and r["error_message"])
        ),
        "double_billed_shots": double_billed.count(),
        "succeeded_not_billed_per_shot": sum(
            1
            for r in succeeded
            if billed_shots.get(r["pk"], set()) != set(range(len(r["shots"] or [])))
        ),
        "failed_with_usage": sum(1 for r in failed if r["pk"] in billed_shots),
        "failed_still_billed": sum(1 for ms in failed_net_ms.values() if ms != 0),
        "illegal_histories": len(illegal),
        "attempts": dict(sorted(Counter(r["attempts"] for r in rows).items())),
        "failure_examples": {r["error_code"]: r["error_message"][:200] for r in failed},
        **(
            {"illegal_examples": {str(pk): history.get(pk, []) for pk in illegal[:3]}}
            if illegal
            else {}
        ),
    }


def assert_clean(counts: dict[str, Any]) -> None:
    """The invariants every fault must leave intact."""
    assert counts["lost"] == 0, counts
    assert counts["double_billed_shots"] == 0, counts
    assert counts["failed_without_reason"] == 0, counts
    assert counts["illegal_histories"] == 0, counts
    assert counts["succeeded_not_billed_per_shot"] == 0, counts
    assert counts["failed_still_billed"] == 0, counts


def report(scenario: str, counts: dict[str, Any]) -> None:
    """Print one line for `pytest -s`, and merge the counts into $REELCAST_FAULTS_REPORT."""
    vendor = database_vendor()
    flat = " ".join(
        f"{key}={value}" for key, value in counts.items() if not isinstance(value, dict)
    )
    print(f"\nfaults[{scenario}/{vendor}]: {flat}")
    for key, value in counts.items():
        if isinstance(value, dict):
            print(f"  {key}: {json.dumps(value, sort_keys=True, default=str)}")
    path = os.environ.get("REELCAST_FAULTS_REPORT")
    if not path:
        return
    target = Path(path)
    try:
        merged = json.loads(target.read_text())
    except (OSError, ValueError):
        merged = {}
    merged[f"{scenario}[{vendor}]"] = counts
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged, indent=2, sort_keys=True, default=str) + "\n")
