"""The jobs API under load on a production-style server, and how fast an idle pool starts a job.

For each database (the SQLite default, then PostgreSQL + Redis), on loopback and a fresh
database of its own:

1. gunicorn with the deployment's own settings (``platform/deploy/gunicorn.conf.py``: gthread,
   4 workers x 2 threads here) on ``config.wsgi``, ``DJANGO_DEBUG=false``;
2. one tenant on a plan (backlog cap 100,000 jobs), a secret key and a small template, made
   through the services;
3. after a warm-up (a gunicorn worker's first create imports the pipeline's modules: seconds),
   32 client threads for ``--duration`` seconds, each creating jobs (``POST /api/v1/jobs/`` with
   an ``Idempotency-Key`` per logical request; a request that dies on the connection is sent
   once more with the same key) and polling them (``GET /api/v1/jobs/{id}/``, the new job and
   an older one). Of every 8 logical requests one is also sent at the same moment on a second
   connection (a client that retries too eagerly), and one loses its first answer (the client
   hangs up once the request is on the wire, then sends the same key again). No worker runs, so
   the jobs stay queued, but every create still dispatches (the pool lock, the slot count, the
   broker);
4. then from the database: no job lost (every 2xx response's job exists, with its key) and none
   duplicated (one job per logical request, whatever the number of deliveries);
5. PostgreSQL + Redis only: a real ``qcluster`` for one pool (the preview backend, as a second
   model so the backlog above does not reach it) and the CPU cluster; jobs are created one at a
   time, each after the previous one finished, and the time from the create response to the
   job's ``started_at`` (written by the worker when it moves the job to running) is the
   dispatch latency of an idle worker.

Rate limits stay on (every request spends from the shared cache, as in production) but are
raised out of reach: the bench measures the server, not its throttle.

The clients run on the same cores as the server. The CPU seconds the web processes and (on
PostgreSQL) this database's backends spent during the load are read from /proc (Redis is not
counted), so ``server_cpu_ms_per_create`` (one logical create with its two polls) can be
compared between databases and machines even when other work shares the cores and the
throughput figures cannot.

    .venv/bin/python bench/load.py [--duration 20] [--clients 32] [--databases sqlite,postgres]

Needs gunicorn (``pip install -e '.[prod]'``); PostgreSQL (``REELCAST_BENCH_PG``, default
``postgres://postgres@127.0.0.1:5432/postgres``, a role that may create databases) and Redis
(``REELCAST_BENCH_REDIS``, default ``redis://127.0.0.1:6379/0``) for the second half, which is
skipped (and said so) when either is unreachable. Prints figures and never asserts a time; the
last line is the headline (PostgreSQL), the line before it the SQLite figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GUNICORN_WORKERS, GUNICORN_THREADS = 4, 2
DUPLICATE_EVERY = 8  # every n-th logical create is also delivered concurrently a second time
LOST_ANSWER_AT = 3  # and another of every 8 loses its first answer and is sent again
REQUEST_TIMEOUT_S = 30.0
DISPATCH_JOBS = 16  # the first is a warm-up and is shown apart
RATE = "1000000/min"
TEMPLATE_CONTENT = {
    "variables": [
        {"name": "name", "type": "text", "max_length": 32},
        {"name": "virtue", "type": "choice", "choices": ["courage", "honesty"]},
    ],
    "prompt": "{name} shows {virtue} in the playground.",
    "negative_prompt": "blurry",
    "title": "{name} and {virtue}",
    "model": "preview",
    "width": 128,
    "height": 96,
    "fps": 8,
    "duration_s": 1.0,
}


# --- figures ----------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> list[str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f", {kib / 2**20:.1f} GiB"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"machine: {os.cpu_count()} cores ({model or platform.processor() or '?'}){memory}, "
        f"{platform.machine()}, load average {load}",
        f"python {platform.python_version()}",
    ]


# --- HTTP clients ---------------------------------------------------------------------------


class Connection:
    """One keep-alive connection; a request that fails on the wire is sent once more."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn: http.client.HTTPConnection | None = None
        self.connection_errors = 0

    def _once(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S
            )
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if response.will_close:
            self.close()
        return response.status, payload

    def call(self, method: str, path: str, data: dict | None = None, key: str | None = None):
        """(status or "connection_error", parsed body or None, milliseconds, retried)."""
        headers = {"Authorization": f"Bearer {self.token}", "Host": "127.0.0.1"}
        body = None
        if data is not None:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        started = time.perf_counter()
        retried = False
        for attempt in (1, 2):
            try:
                status, payload = self._once(method, path, body, headers)
                break
            except (OSError, http.client.HTTPException):
                self.connection_errors += 1
                if attempt == 2:
                    return "connection_error", None, _ms(started), True
                retried = True  # the same key again: the server must answer as it did
        parsed = None
        with contextlib.suppress(ValueError):
            parsed = json.loads(payload) if payload else None
        return status, parsed, _ms(started), retried

    def send_and_hang_up(self, path: str, data: dict, key: str) -> None:
        """Send a create and close the socket before the answer: a response lost on the way."""
        self.close()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Host": "127.0.0.1",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        }
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn.request("POST", path, body=json.dumps(data).encode(), headers=headers)
            time.sleep(0.01)  # the request is on the wire and being served
        conn.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class LoadClient(threading.Thread):
    def __init__(
        self,
        number: int,
        port: int,
        token: str,
        template_id: str,
        deadline: float,
        duplicate_every: int = DUPLICATE_EVERY,
    ):
        super().__init__(name=f"client-{number}", daemon=True)
        self.number, self.template_id, self.deadline = number, template_id, deadline
        self.every = max(2, duplicate_every)
        self.main = Connection(port, token)
        self.second = Connection(port, token)
        self.create_ms: list[float] = []
        self.poll_ms: list[float] = []
        self.create_status: Counter = Counter()
        self.duplicate_status: Counter = Counter()
        self.resend_status: Counter = Counter()
        self.poll_status: Counter = Counter()
        self.retries = 0
        # logical request key -> ids of the jobs its 2xx answers named (must be one)
        self.answers: dict[str, set[str]] = {}
        self.created_ids: list[str] = []  # from 201 answers
        self.logical = 0
        self.logical_ok = 0
        self.error_samples: list[str] = []

    def _note(self, key: str, status, payload) -> None:
        if status in (200, 201) and isinstance(payload, dict) and payload.get("id"):
            self.answers.setdefault(key, set()).add(payload["id"])
            if status == 201:
                self.created_ids.append(payload["id"])
        elif len(self.error_samples) < 3:
            self.error_samples.append(f"{status}: {json.dumps(payload)[:300]}")

    def _deliver_twice(self, body: dict, key: str, into: list) -> None:
        into.append(self.second.call("POST", "/api/v1/jobs/", body, key))

    def run(self) -> None:
        rng = random.Random(self.number)
        while time.monotonic() < self.deadline:
            n = self.logical
            self.logical += 1
            key = f"load-{self.number}-{n}-{uuid.uuid4().hex[:8]}"
            body = {
                "template": self.template_id,
                "values": {"name": f"Pupil {self.number}-{n}", "virtue": "courage"},
            }
            # Offset by the client's number: every kind of delivery happens from the start,
            # however few requests each client gets through.
            phase = (n + self.number) % self.every
            if phase == LOST_ANSWER_AT and self.every > LOST_ANSWER_AT + 1:
                # The first answer is lost; the client sends the same key again.
                self.main.send_and_hang_up("/api/v1/jobs/", body, key)
                status, payload, _, retried = self.main.call("POST", "/api/v1/jobs/", body, key)
                self.resend_status[status] += 1
                self.retries += retried
                self._note(key, status, payload)
                self.logical_ok += key in self.answers
                continue
            twin: threading.Thread | None = None
            twin_result: list = []
            if phase == self.every - 1:
                twin = threading.Thread(target=self._deliver_twice, args=(body, key, twin_result))
                twin.start()
            status, payload, ms, retried = self.main.call("POST", "/api/v1/jobs/", body, key)
            self.create_ms.append(ms)
            self.create_status[status] += 1
            self.retries += retried
            self._note(key, status, payload)
            if twin is not None:
                twin.join()
                twin_status, twin_payload, _, twin_retried = twin_result[0]
                self.duplicate_status[twin_status] += 1
                self.retries += twin_retried
                self._note(key, twin_status, twin_payload)
            if key in self.answers:
                self.logical_ok += 1
            if not self.created_ids:
                continue
            targets = [self.created_ids[-1], rng.choice(self.created_ids)]
            for job_id in targets:
                if time.monotonic() >= self.deadline:
                    break
                status, payload, ms, retried = self.main.call("GET", f"/api/v1/jobs/{job_id}/")
                self.poll_ms.append(ms)
                self.poll_status[status] += 1
                self.retries += retried
                if status != 200 and len(self.error_samples) < 3:
                    self.error_samples.append(f"poll {status}: {json.dumps(payload)[:300]}")
        self.main.close()
        self.second.close()


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def stop(process: subprocess.Popen | None, grace_s: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_gunicorn(port: int, log_path: Path) -> subprocess.Popen:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        raise SystemExit(f"{gunicorn} is missing: pip install -e '.[prod]' (gunicorn)")
    env = {**os.environ, "GUNICORN_WORKERS": str(GUNICORN_WORKERS)}
    env["GUNICORN_THREADS"] = str(GUNICORN_THREADS)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                str(gunicorn),
                "--config",
                str(ROOT / "platform/deploy/gunicorn.conf.py"),
                "--bind",
                f"127.0.0.1:{port}",
                "config.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited {process.returncode}; see {log_path}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
            if conn.getresponse().status == 200:
                # Every worker must be up, or the first second measures their start-up.
                time.sleep(2.0)
                return process
        time.sleep(0.2)
    stop(process)
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def start_qcluster(cluster: str, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "Q_CLUSTER_NAME": cluster}
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def server_errors(log_path: Path) -> Counter:
    """ERROR records in the server log, by their exception's last line (or message)."""
    found: Counter = Counter()
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                if "Traceback" in line or "[ERROR]" in line or "[CRITICAL]" in line:
                    found[line.strip()[:200]] += 1
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("ERROR", "CRITICAL"):
                    text = entry.get("exception") or entry.get("message") or ""
                    found[text.strip().splitlines()[-1][:200] if text.strip() else "?"] += 1
    return found


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry.name))
    return pids


def cpu_snapshot(gunicorn: subprocess.Popen) -> dict[str, dict[int, float]]:
    """CPU seconds so far of the web server's processes and of this database's PostgreSQL
    backends (SQLite works inside the web processes)."""
    from django.db import connection

    backends: list[int] = []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "select pid from pg_stat_activity where datname = current_database() "
                "and pid <> pg_backend_pid()"
            )
            backends = [row[0] for row in cursor.fetchall()]
        connection.close()
    return {
        "web": {pid: _cpu_s(pid) for pid in _group(gunicorn.pid)},
        "database": {pid: _cpu_s(pid) for pid in backends},
        "client": {0: time.process_time()},
    }


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    return {
        part: sum(max(0.0, s - before[part].get(pid, 0.0)) for pid, s in after[part].items())
        for part in after
    }


# --- one database, in a process of its own (Django's settings are per process) ---------------


def configure(kind: str, workdir: Path, pid_tag: str) -> dict[str, str]:
    """The environment of every process of this run (bench, gunicorn, workers)."""
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "REELCAST_VAR_DIR": str(workdir),
        "REELCAST_MEDIA_ROOT": str(workdir / "media"),
        "REELCAST_C2PA_DIR": str(workdir / "c2pa"),
        "REELCAST_C2PA_DEV_CHAIN": "true",
        "REELCAST_RATE_READ": RATE,
        "REELCAST_RATE_WRITE": RATE,
        "REELCAST_RATE_JOBS_CREATE": RATE,
        "REELCAST_QUEUE_LOG_LEVEL": "ERROR",
        # "load-a" takes the load test's preview jobs and never gets a worker (they stay queued);
        # "load-b" serves a second preview model, so the dispatch part starts from an empty
        # queue. Pool names carry the pid: queues on a shared Redis are named after them.
        "REELCAST_POOLS": json.dumps(
            {
                "default": {"hardware_class": "cpu", "capacity": 1, "models": []},
                f"load-a-{pid_tag}": {
                    "hardware_class": "cpu",
                    "capacity": 1,
                    "models": ["preview"],
                },
                f"load-b-{pid_tag}": {
                    "hardware_class": "cpu",
                    "capacity": 1,
                    "models": ["preview-b"],
                },
            }
        ),
        "REELCAST_MODELS": json.dumps(
            {
                "preview-b": {
                    "backend": "preview",
                    "title": "Storyboard preview (second pool)",
                    "modes": ["t2v", "i2v", "r2v"],
                    "hardware_classes": ["cpu"],
                }
            }
        ),
    }
    if kind == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'load.sqlite3'}"
        env["REDIS_URL"] = ""
    else:
        base = urlparse(
            os.environ.get("REELCAST_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
        )
        env["DATABASE_URL"] = base._replace(path=f"/reelcast_load_{pid_tag}").geturl()
        env["REDIS_URL"] = os.environ.get("REELCAST_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    return env


def _pg_admin(sql: str) -> None:
    import psycopg

    url = os.environ.get("REELCAST_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def seed() -> dict[str, str]:
    from billing.services import plan_upsert, subscription_assign
    from generation.services import template_create
    from tenants.models import ApiKey, Tenant
    from tenants.services import apikey_create, tenant_create

    tenant = tenant_create(name="Load School", kind=Tenant.Kind.SCHOOL, slug="load-school")
    plan, _ = plan_upsert(
        slug="load",
        fields={
            "name": "Load",
            "max_concurrent_jobs": 4,
            "max_queued_jobs": 100_000,
            "max_width": 1280,
            "max_height": 720,
            "max_duration_s": 30.0,
            "allowed_models": [],
        },
        rates={
            "cpu": {
                "included_gpu_seconds": 36000,
                "overage_cents_per_gpu_second": "0.001",
                "hard_cap_gpu_seconds": None,
            }
        },
    )
    subscription_assign(tenant=tenant, plan=plan)
    template = template_create(
        tenant=tenant, name="Courage", slug="courage", kind="character", content=TEMPLATE_CONTENT
    )
    key = apikey_create(tenant=tenant, kind=ApiKey.Kind.SECRET, name="load").raw_key
    return {
        "tenant": str(tenant.pk),
        "template": str(template.pk),
        "key": key,
        "max_queued_jobs": str(plan.max_queued_jobs),
    }


def verify(clients: list[LoadClient], tenant_id: str) -> dict[str, int]:
    """From the database: lost = 2xx answers naming no job; duplicated = extra jobs for one
    logical request; key_mismatch = a 2xx answer naming another job than its key's record."""
    from generation.models import IdempotencyKey, Job

    answers: dict[str, set[str]] = {}
    for client in clients:
        answers.update(client.answers)
    named = {job_id for ids in answers.values() for job_id in ids}
    existing: set[str] = set()
    ordered = sorted(named)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        existing |= {str(i) for i in Job.objects.filter(pk__in=chunk).values_list("id", flat=True)}
    names = Counter(
        (values or {}).get("name")
        for values in Job.objects.filter(tenant_id=tenant_id, model="preview").values_list(
            "values", flat=True
        )
    )
    records = dict(IdempotencyKey.objects.filter(tenant_id=tenant_id).values_list("key", "job_id"))
    return {
        "jobs_in_db": sum(n for name, n in names.items() if str(name).startswith("Pupil ")),
        "logical_2xx": len(answers),
        "lost": len(named - existing),
        "duplicated": sum(count - 1 for count in names.values() if count > 1),
        "answers_disagree": sum(1 for ids in answers.values() if len(ids) > 1),
        "key_mismatch": sum(1 for key, ids in answers.items() if {str(records.get(key))} != ids),
        "jobs_without_key": sum(names.values()) - len(records),
    }


def warm_up(port: int, seeded: dict) -> tuple[int, float]:
    """Rounds of concurrent creates until every gunicorn worker has served some: a worker's
    first create imports the pipeline's modules (seconds), which is start-up, not load."""
    started = time.monotonic()
    concurrency = 2 * GUNICORN_WORKERS * GUNICORN_THREADS
    rounds = 0
    while time.monotonic() - started < 45:
        rounds += 1
        slowest: list[float] = []

        def one(number: int, round_number: int = rounds, slowest: list[float] = slowest) -> None:
            connection = Connection(port, seeded["key"])
            status, payload, ms, _ = connection.call(
                "POST",
                "/api/v1/jobs/",
                {
                    "template": seeded["template"],
                    "values": {"name": f"Warm {round_number}-{number}", "virtue": "courage"},
                },
                key=f"warm-{round_number}-{number}-{uuid.uuid4().hex[:8]}",
            )
            if status == 201:
                connection.call("GET", f"/api/v1/jobs/{payload['id']}/")
            connection.close()
            slowest.append(ms)

        threads = [threading.Thread(target=one, args=(n,)) for n in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Cold workers show as outliers (an import of seconds); a warm round has none.
        if rounds >= 2 and max(slowest) <= 3 * percentile(slowest, 0.5):
            break
    return rounds * concurrency, time.monotonic() - started


def load_phase(
    port: int, seeded: dict, clients_n: int, duration_s: float, duplicate_every: int
) -> dict:
    deadline = time.monotonic() + duration_s
    started = time.monotonic()
    clients = [
        LoadClient(number, port, seeded["key"], seeded["template"], deadline, duplicate_every)
        for number in range(clients_n)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    elapsed = time.monotonic() - started
    create_ms = [ms for c in clients for ms in c.create_ms]
    poll_ms = [ms for c in clients for ms in c.poll_ms]
    statuses: dict[str, Counter] = {
        "create": Counter(),
        "duplicate": Counter(),
        "resend": Counter(),
        "poll": Counter(),
    }
    for client in clients:
        statuses["create"].update(client.create_status)
        statuses["duplicate"].update(client.duplicate_status)
        statuses["resend"].update(client.resend_status)
        statuses["poll"].update(client.poll_status)
    logical_ok = sum(c.logical_ok for c in clients)
    requests = sum(sum(s.values()) for s in statuses.values())
    return {
        "clients": clients,
        "elapsed_s": elapsed,
        "creates_per_s": logical_ok / elapsed,
        "requests_per_s": requests / elapsed,
        "create_p50_ms": percentile(create_ms, 0.50),
        "create_p99_ms": percentile(create_ms, 0.99),
        "poll_p50_ms": percentile(poll_ms, 0.50),
        "poll_p99_ms": percentile(poll_ms, 0.99),
        "statuses": {name: dict(sorted(c.items(), key=str)) for name, c in statuses.items()},
        "retries": sum(c.retries for c in clients),
        "logical": sum(c.logical for c in clients),
        "logical_ok": logical_ok,
        "samples": [s for c in clients for s in c.error_samples][:5],
    }


def dispatch_phase(port: int, seeded: dict, pool: str, workdir: Path, jobs: int) -> dict:
    """Idle pool worker: create, wait until the job is finished, create the next."""
    from django.db import connections

    from generation.models import Job, WorkerHeartbeat

    connections.close_all()
    workers = [
        start_qcluster(pool, workdir / "qcluster-pool.log"),
        start_qcluster("default", workdir / "qcluster-default.log"),
    ]
    try:
        ready = time.monotonic() + 60
        while not WorkerHeartbeat.objects.filter(pool=pool).exists():
            if time.monotonic() > ready or any(w.poll() is not None for w in workers):
                raise SystemExit(f"the {pool} worker did not start; see {workdir}/qcluster-*.log")
            time.sleep(0.2)
        time.sleep(1.0)  # the CPU cluster too
        client = Connection(port, seeded["key"])
        from_response, from_insert, total, states = [], [], [], Counter()
        cold = float("nan")
        for number in range(jobs):
            status, payload, _, _ = client.call(
                "POST",
                "/api/v1/jobs/",
                {
                    "template": seeded["template"],
                    "model": "preview-b",
                    "values": {"name": f"Dispatch {number}", "virtue": "honesty"},
                },
                key=f"dispatch-{number}-{uuid.uuid4().hex[:8]}",
            )
            answered = time.time()
            if status != 201:
                raise SystemExit(f"dispatch job create answered {status}: {payload}")
            job_id = payload["id"]
            finished_by = time.monotonic() + 60
            job = Job.objects.get(pk=job_id)
            while not job.is_terminal and time.monotonic() < finished_by:
                time.sleep(0.05)
                job.refresh_from_db()
            states[job.state] += 1
            if job.started_at is None:
                continue
            if number == 0:
                cold = (job.started_at.timestamp() - answered) * 1000
                continue
            from_response.append((job.started_at.timestamp() - answered) * 1000)
            from_insert.append((job.started_at - job.created_at).total_seconds() * 1000)
            if job.finished_at is not None:
                total.append((job.finished_at - job.created_at).total_seconds() * 1000)
            time.sleep(0.2)  # the worker goes back to waiting on the queue
        client.close()
        return {
            "cold_ms": cold,
            "dispatch_p50_ms": percentile(from_response, 0.50),
            "dispatch_p99_ms": percentile(from_response, 0.99),
            "dispatch_max_ms": max(from_response, default=float("nan")),
            "insert_to_start_p50_ms": percentile(from_insert, 0.50),
            "insert_to_start_p99_ms": percentile(from_insert, 0.99),
            "end_to_end_p50_ms": percentile(total, 0.50),
            "measured": len(from_response),
            "states": dict(states),
        }
    finally:
        for worker in workers:
            stop(worker, grace_s=10)


def run_database(kind: str, args: argparse.Namespace) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"reelcast-load-{kind}-"))
    pid_tag = str(os.getpid())
    env = configure(kind, workdir, pid_tag)
    os.environ.update(env)
    if kind == "postgres":
        _pg_admin(f'CREATE DATABASE "reelcast_load_{pid_tag}"')
    gunicorn = None
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection, connections

        started = time.monotonic()
        call_command("migrate", verbosity=0, interactive=False)
        call_command("createcachetable", verbosity=0)
        seeded = seed()
        setup_s = time.monotonic() - started
        vendor = connection.vendor
        with connection.cursor() as cursor:
            cursor.execute(
                "select sqlite_version()" if vendor == "sqlite" else "show server_version"
            )
            version = cursor.fetchone()[0]
        db_options = settings.DATABASES["default"].get("OPTIONS", {})
        conn_max_age = settings.DATABASES["default"]["CONN_MAX_AGE"]
        connections.close_all()
        print(
            f"[{kind}] {vendor} {version}; broker {'redis' if settings.REDIS_URL else 'orm'}, "
            f"cache {settings.REELCAST_CACHE}; CONN_MAX_AGE={conn_max_age} options={db_options}; "
            f"migrate + seed {setup_s:.1f} s; plan max_queued_jobs={seeded['max_queued_jobs']}",
            flush=True,
        )
        port = free_port()
        log_path = workdir / "gunicorn.log"
        gunicorn = start_gunicorn(port, log_path)
        print(
            f"[{kind}] gunicorn {GUNICORN_WORKERS} workers x {GUNICORN_THREADS} threads "
            f"(platform/deploy/gunicorn.conf.py), {args.clients} clients for {args.duration:g} s",
            flush=True,
        )
        warm_jobs, warm_s = warm_up(port, seeded)
        print(f"[{kind}] warm-up: {warm_jobs} creates in {warm_s:.1f} s", flush=True)
        before = cpu_snapshot(gunicorn)
        figures = load_phase(port, seeded, args.clients, args.duration, args.duplicate_every)
        cpu = cpu_used(before, cpu_snapshot(gunicorn))
        checks = verify(figures.pop("clients"), seeded["tenant"])
        errors = server_errors(log_path)
        print(
            f"[{kind}] {figures['logical']} logical creates ({figures['logical_ok']} answered 2xx) "
            f"in {figures['elapsed_s']:.1f} s: {figures['creates_per_s']:.1f} creates/s, "
            f"{figures['requests_per_s']:.1f} requests/s; connection retries {figures['retries']}",
            flush=True,
        )
        print(
            f"[{kind}] create p50 {figures['create_p50_ms']:.1f} ms p99 "
            f"{figures['create_p99_ms']:.1f} ms; poll p50 {figures['poll_p50_ms']:.1f} ms p99 "
            f"{figures['poll_p99_ms']:.1f} ms",
            flush=True,
        )
        served = max(1, figures["logical_ok"])
        figures["server_cpu_ms_per_create"] = (cpu["web"] + cpu["database"]) / served * 1000
        share = sum(cpu.values()) / (figures["elapsed_s"] * (os.cpu_count() or 1))
        print(
            f"[{kind}] CPU over {figures['elapsed_s']:.1f} s wall on {os.cpu_count()} cores: "
            f"web {cpu['web']:.1f} s, database server {cpu['database']:.1f} s, these clients "
            f"{cpu['client']:.1f} s (together {share:.0%} of the machine; the rest went to "
            f"other work on it); server CPU per logical create (with its polls) "
            f"{figures['server_cpu_ms_per_create']:.0f} ms",
            flush=True,
        )
        print(f"[{kind}] statuses {json.dumps(figures['statuses'])}", flush=True)
        print(f"[{kind}] database check {json.dumps(checks)}", flush=True)
        for sample in figures["samples"]:
            print(f"[{kind}] sample refusal: {sample}", flush=True)
        for text, count in errors.most_common(5):
            print(f"[{kind}] server error x{count}: {text}", flush=True)
        result = {**{k: v for k, v in figures.items() if k != "samples"}, **checks}
        result["server_errors"] = sum(errors.values())
        result["cpu_s"] = cpu
        if kind == "postgres":
            dispatched = dispatch_phase(
                port, seeded, f"load-b-{pid_tag}", workdir, args.dispatch_jobs
            )
            print(
                f"[{kind}] dispatch, idle worker, {dispatched['measured']} jobs after a warm-up "
                f"({dispatched['cold_ms']:.1f} ms): create response -> started_at p50 "
                f"{dispatched['dispatch_p50_ms']:.1f} ms p99 {dispatched['dispatch_p99_ms']:.1f} "
                f"ms (max {dispatched['dispatch_max_ms']:.1f}); row insert -> started_at p50 "
                f"{dispatched['insert_to_start_p50_ms']:.1f} ms p99 "
                f"{dispatched['insert_to_start_p99_ms']:.1f} ms; create -> finished p50 "
                f"{dispatched['end_to_end_p50_ms']:.0f} ms; states {dispatched['states']}",
                flush=True,
            )
            result.update(dispatched)
        return result
    finally:
        stop(gunicorn)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if kind == "postgres":
            with contextlib.suppress(Exception):
                _pg_admin(f'DROP DATABASE IF EXISTS "reelcast_load_{pid_tag}" WITH (FORCE)')
            with contextlib.suppress(Exception):
                import redis

                client = redis.Redis.from_url(env["REDIS_URL"])
                for name in (f"load-a-{pid_tag}", f"load-b-{pid_tag}"):
                    client.delete(f"django_q:{name}:q")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"[{kind}] kept {workdir}", flush=True)


# --- the parent: one child per database, then the headline ------------------------------------


def _headline(result: dict, *, dispatch: bool) -> str:
    pairs = {
        "creates_per_s": f"{result['creates_per_s']:.1f}",
        "p99_ms": f"{result['create_p99_ms']:.1f}",
        "lost": result["lost"],
        "duplicated": result["duplicated"],
    }
    if dispatch:
        pairs["dispatch_p50_ms"] = f"{result['dispatch_p50_ms']:.1f}"
        pairs["dispatch_p99_ms"] = f"{result['dispatch_p99_ms']:.1f}"
    pairs["create_p50_ms"] = f"{result['create_p50_ms']:.1f}"
    pairs["poll_p50_ms"] = f"{result['poll_p50_ms']:.1f}"
    pairs["poll_p99_ms"] = f"{result['poll_p99_ms']:.1f}"
    failures = sum(
        count
        for name in ("create", "duplicate", "resend", "poll")
        for status, count in result["statuses"][name].items()
        if str(status) not in ("200", "201")
    )
    pairs["non_2xx"] = failures
    pairs["server_cpu_ms_per_create"] = f"{result['server_cpu_ms_per_create']:.0f}"
    return " ".join(f"{name}={value}" for name, value in pairs.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per database")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--dispatch-jobs", type=int, default=DISPATCH_JOBS)
    parser.add_argument(
        "--duplicate-every",
        type=int,
        default=DUPLICATE_EVERY,
        help="every n-th logical create is delivered twice at once (2: every other one; "
        "below 5 no answer is lost)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folders (logs)")
    parser.add_argument("--child", choices=["sqlite", "postgres"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = run_database(args.child, args)
        print("RESULT " + json.dumps(result, default=str), flush=True)
        return

    for line in machine():
        print(line)
    results: dict[str, dict] = {}
    for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
        if kind == "postgres":
            pg = os.environ.get("REELCAST_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
            redis_url = os.environ.get("REELCAST_BENCH_REDIS", "redis://127.0.0.1:6379/0")
            if not (reachable(pg, 5432) and reachable(redis_url, 6379)):
                print(f"[postgres] skipped: PostgreSQL ({pg}) or Redis ({redis_url}) unreachable")
                continue
        command = [sys.executable, __file__, "--child", kind, *sys.argv[1:]]
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("RESULT "):
                results[kind] = json.loads(line[len("RESULT ") :])
            else:
                print(line, end="", flush=True)
        if child.wait() != 0:
            print(f"[{kind}] failed (exit {child.returncode})")
    if "sqlite" in results:
        print("sqlite " + _headline(results["sqlite"], dispatch=False))
    if "postgres" in results:
        print(_headline(results["postgres"], dispatch=True))
    elif "sqlite" in results:
        print(_headline(results["sqlite"], dispatch=False) + " database=sqlite")


if __name__ == "__main__":
    main()
