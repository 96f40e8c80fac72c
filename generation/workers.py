"""Worker processes: who they are, their heartbeat, their warm models, and job leases.

A worker holds a job through a lease (owner + expiry) that its heartbeat thread renews while
the job runs. A worker killed with -9 stops renewing; once the lease lapses the reaper
(generation.tasks.reap_lost_jobs) puts the job back in the queue, and a second delivery of the
same task finds the job leased by someone alive and leaves it alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from generation.models import Job, WorkerHeartbeat

logger = logging.getLogger(__name__)

_started_at = timezone.now()
_current_job: dict[str, object] = {"id": None}
_lock = threading.Lock()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pool_name() -> str:
    return os.environ.get("Q_CLUSTER_NAME") or settings.Q_CLUSTER["name"]


def lease_expiry():
    return timezone.now() + timedelta(seconds=settings.REELCAST_LEASE_S)


def renew_lease(job_id: object) -> bool:
    """Extend our lease on ``job_id``; False if the job is no longer ours."""
    return (
        Job.objects.filter(pk=job_id, lease_owner=worker_id()).update(
            lease_expires_at=lease_expiry()
        )
        == 1
    )


def set_current_job(job_id: object | None) -> None:
    with _lock:
        _current_job["id"] = job_id


def _gpu_facts() -> dict:
    """GPU name and memory, only if torch is already loaded here (never imports it)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info()
    return {
        "gpu_name": props.name,
        "gpu_memory_total_mb": total // 2**20,
        "gpu_memory_used_mb": (total - free) // 2**20,
    }


def _loaded_models() -> list[dict]:
    import sys

    wan = sys.modules.get("generation.backends.wan")
    return wan.loaded_models() if wan is not None else []


def beat() -> None:
    """Write this worker's heartbeat row and renew the lease of the job it is running."""
    from generation.scheduler import pools

    pool = pool_name()
    hardware = next(
        (p.hardware_class for p in pools() if p.name == pool),
        settings.REELCAST_HARDWARE_CLASS or "cpu",
    )
    with _lock:
        job_id = _current_job["id"]
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        worker=worker_id(),
        defaults={
            "pool": pool,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "hardware_class": hardware,
            "loaded_models": _loaded_models(),
            "current_job": job_id,
            "started_at": _started_at,
            "last_seen": now,
            **_gpu_facts(),
        },
    )
    if job_id is not None:
        renew_lease(job_id)


def _heartbeat_loop(stop: threading.Event) -> None:
    while not stop.wait(settings.REELCAST_HEARTBEAT_S):
        try:
            beat()
        except Exception:  # a missed beat must never kill the worker; the next one retries
            logger.exception("heartbeat failed")
        finally:
            close_old_connections()
    connection.close()


_stop = threading.Event()


def start_heartbeat() -> threading.Thread:
    thread = threading.Thread(
        target=_heartbeat_loop, args=(_stop,), name="reelcast-heartbeat", daemon=True
    )
    thread.start()
    return thread


_heartbeat_thread: list[threading.Thread] = []


def on_worker_spawn(**kwargs) -> None:
    """django-q2's post_spawn hook: warm this pool's models, then beat until the process ends."""
    from django_q.conf import Conf

    from generation.scheduler import pools

    if Conf.SYNC or _heartbeat_thread:
        return  # inline execution (tests, sync mode) is not a worker process

    pool = next((p for p in pools() if p.name == pool_name()), None)
    if pool is not None:
        wan_models = [m for m in pool.models if _backend_of(m) == "wan"]
        if wan_models and settings.REELCAST_WARM_UP:
            from generation.backends.wan import warm_up

            try:
                warm_up(wan_models)
            except Exception:  # a worker that cannot warm up still serves; the job reports why
                logger.exception("warm-up failed for %s", wan_models)
    try:
        beat()
        from generation.tasks import dispatch

        dispatch(pool_name())  # an autoscaled pool's new slot takes work at once
    except Exception:
        logger.exception("first heartbeat failed")
    _heartbeat_thread.append(start_heartbeat())


def _backend_of(model: str) -> str:
    from generation.registry import get_model

    try:
        return get_model(model).backend
    except KeyError:
        return ""
