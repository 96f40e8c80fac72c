"""Boot Reelcast the way an operator does, and talk to it the way its users do.

The platform runs as subprocesses of the test: the operator's management commands, gunicorn
with the shipped ``platform/deploy/gunicorn.conf.py`` and a ``manage.py qcluster``, all with
``cwd`` = the repository root and an environment built from nothing but the variables the
README documents (plus PATH, HOME and the locale). Nothing here imports the application: the
tests see it only through HTTP (and the Stripe-compatible server and S3 store it talks to).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GUNICORN_CONF = ROOT / "platform" / "deploy" / "gunicorn.conf.py"


def base_environment() -> dict[str, str]:
    """What every process of a host has anyway: the search path, home and locale."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    # The project may be installed editable from another checkout (a shared virtualenv): the
    # processes must run this checkout's code.
    env["PYTHONPATH"] = str(ROOT)
    return env


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_bytes()[-chars:].decode(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"


def run_command(
    args: list[str], *, env: dict[str, str], log_dir: Path, timeout_s: float = 300
) -> str:
    """Run one operator command (``manage.py ...`` or a deploy script) to completion; its
    stdout, or a failure that shows what it printed."""
    name = "-".join(Path(a).stem if i == 0 else a.lstrip("-") for i, a in enumerate(args[:2]))
    result = subprocess.run(
        [PYTHON, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    (log_dir / f"{name}.log").write_bytes(result.stdout + b"\n--- stderr\n" + result.stderr)
    if result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(args)}` exited {result.returncode}\n"
            f"stdout:\n{result.stdout.decode(errors='replace')[-3000:]}\n"
            f"stderr:\n{result.stderr.decode(errors='replace')[-3000:]}"
        )
    return result.stdout.decode()


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 20) -> None:
        """SIGTERM to the main process, as Docker and Kubernetes send it (not to the whole
        group: an idle django-q2 cluster whose children get it too did not stop within a
        minute here, while one told alone stops in about a second); whatever is left of the
        process group after ``grace_s`` is killed."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def start_service(
    name: str,
    args: list[str],
    *,
    env: dict[str, str],
    log_dir: Path,
    pass_fds: tuple[int, ...] = (),
) -> Service:
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [PYTHON, *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    return Service(name=name, process=process, log_path=log_path)


def listening_socket() -> socket.socket:
    """A socket on 127.0.0.1 at a port the kernel picks, already listening: gunicorn takes it
    over (``--bind fd://N``), so no other process can take the port in between."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def wait_until(
    condition: Callable[[], Any],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.25,
    explain: Callable[[], str] = lambda: "",
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail saying what never happened
    and what ``explain`` shows about the last state."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s. {explain()}")
        time.sleep(interval_s)


@dataclass
class Platform:
    """A running Reelcast and what a test needs to reach it."""

    url: str
    env: dict[str, str]
    var_dir: Path
    log_dir: Path
    demo: dict[str, Any]
    storefront_origin: str
    services: dict[str, Service] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {s.name} (pid {s.process.pid}, exit {s.process.poll()}):\n"
            f"{tail(s.log_path, chars)}"
            for s in self.services.values()
        )

    def check_alive(self) -> None:
        dead = [s for s in self.services.values() if not s.alive()]
        if dead:
            raise AssertionError(f"{', '.join(s.name for s in dead)} exited; logs:\n{self.logs()}")

    # --- HTTP as a tenant's server --------------------------------------------------------

    def api(self, key: str, **headers: str) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {key}", **headers})
        return session

    def school_api(self) -> requests.Session:
        return self.api(self.demo["school"]["secret_key"])

    # --- HTTP as a person in a browser --------------------------------------------------

    def sign_in(self, username: str, password: str) -> requests.Session:
        """A browser's sign-in: GET the form (CSRF cookie and token), POST it back; the
        session then carries the CSRF header for API writes, as the dashboard's htmx does."""
        session = requests.Session()
        page = session.get(f"{self.url}/accounts/login/", timeout=30)
        assert page.status_code == 200, (page.status_code, page.text[:500])
        token = csrf_token(page.text)
        answer = session.post(
            f"{self.url}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{self.url}/accounts/login/"},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 302, (
            f"sign-in as {username} answered {answer.status_code}: {answer.text[:500]}"
        )
        session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
        session.headers["Referer"] = f"{self.url}/app/"
        return session

    # --- jobs --------------------------------------------------------------------------

    def wait_for_job(
        self, api: requests.Session, job_id: str, *, states: tuple[str, ...], timeout_s: float
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            self.check_alive()
            response = api.get(f"{self.url}/api/v1/jobs/{job_id}/", timeout=30)
            assert response.status_code == 200, (response.status_code, response.text[:500])
            last.clear()
            last.update(response.json())
            if last["state"] in ("failed", "blocked", "canceled") and last["state"] not in states:
                raise AssertionError(f"job {job_id} ended {last['state']}: {json.dumps(last)}")
            return dict(last) if last["state"] in states else None

        return wait_until(
            reached,
            timeout_s=timeout_s,
            what=f"job {job_id} reaching {'/'.join(states)}",
            interval_s=0.5,
            explain=lambda: f"last body: {json.dumps(last)[:2000]}\n{self.logs(2000)}",
        )


_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')


def csrf_token(html: str) -> str:
    found = _CSRF_INPUT.search(html)
    assert found, f"no CSRF token in the page: {html[:500]}"
    return found.group(1)
