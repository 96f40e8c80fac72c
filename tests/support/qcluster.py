"""Real django-q2 cluster processes for tests: the environment they share with the test's
database, starting and stopping them, and enqueueing to Redis from the (synchronous) suite."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url(*, application_name: str = "") -> str:
    """The test database as a DATABASE_URL a subprocess can open (SQLite's is a file); on
    PostgreSQL an application name lets a test find that process's connections."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    url = (
        f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    return f"{url}?application_name={application_name}" if application_name else url


def worker_env(redis_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a real `manage.py qcluster` on this test's database and media."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "true",
        "DATABASE_URL": database_url(application_name=extra.pop("APPLICATION_NAME", "")),
        "REDIS_URL": redis_url,
        "REELCAST_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "REELCAST_C2PA_DIR": str(settings.REELCAST_C2PA_DIR),
        "REELCAST_VAR_DIR": str(var_dir),
        "REELCAST_QUEUE_POLL_S": "0.2",
        **extra,
    }


def start_qcluster(env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """``manage.py qcluster`` in its own process group; output to ``log`` or a pipe."""
    connection.close()  # SQLite: let the worker take the write lock freely
    out = log.open("ab") if log is not None else subprocess.PIPE
    try:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log is not None:
            out.close()


def stop(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    # What the workers did is checked in the database; how they shut down is not under test.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def redis_broker(redis_url: str):
    """The suite's own Conf is synchronous; point this process at Redis to enqueue."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    previous = (Conf.SYNC, Conf.REDIS, Conf.ORM)
    Conf.SYNC, Conf.REDIS, Conf.ORM = False, redis_url, None
    try:
        assert get_broker().__class__.__name__ == "Redis"
        yield
    finally:
        Conf.SYNC, Conf.REDIS, Conf.ORM = previous
