"""`make run` (platform/deploy/run-local.sh) as a user and a process manager meet it: it comes
up on a fresh var directory, and SIGTERM (what systemd or supervisord sends), to the script or
to `make run`, stops the web server and the worker as Ctrl-C does, leaving no process behind.
Later starts on the same directory keep the demo keys the first one printed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "platform" / "deploy" / "run-local.sh"
# `make run` is the embedded default whatever the suite runs on: once per CI run is enough, in
# the SQLite pass (the PostgreSQL pass sets DATABASE_URL).
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="make run is tested in the embedded-default pass"
)
STOP_WITHIN_S = 20.0  # the script's own grace for the worker is 10 s


def _free_port() -> int:
    """REELCAST_TEST_PORT where ports are shared out, else one the OS has free."""
    if os.environ.get("REELCAST_TEST_PORT"):
        return int(os.environ["REELCAST_TEST_PORT"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(var_dir: Path, port: int) -> dict[str, str]:
    """A user's shell: none of Django's or Reelcast's variables, the venv of this interpreter."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "REELCAST_"))
        and name not in ("DATABASE_URL", "REDIS_URL")
    }
    return {
        **env,
        "BIN": str(Path(sys.executable).parent),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "REELCAST_VAR_DIR": str(var_dir),
        "REELCAST_WARM_UP": "false",
    }


def _ours(var_dir: Path) -> list[psutil.Process]:
    """Every live process started with this test's var directory in its environment."""
    found = []
    for process in psutil.process_iter():
        try:
            environ = process.environ()
            if environ.get("REELCAST_VAR_DIR") == str(var_dir) and process.status() != "zombie":
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        try:
            lines.append(f"{process.pid} {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    return "; ".join(lines)


def _start(var_dir: Path, port: int, log: Path, *, through_make: bool = False) -> subprocess.Popen:
    """run-local.sh, or `make run` (without its install step: this interpreter's venv is
    ready), in a session of its own: a signal for the group reaches it and nothing of the
    test's, as Ctrl-C in a terminal reaches the foreground group."""
    env = _environment(var_dir, port)
    command = ["bash", str(SCRIPT)]
    if through_make:
        command = ["make", "-s", "-o", "install-run", "run", f"BIN={env['BIN']}", f"PORT={port}"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_until_healthy(script: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if script.poll() is not None:
            pytest.fail(f"run-local.sh exited {script.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if json.loads(answer.read()) == {"status": "ok"}:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"/healthz on port {port} did not answer within 240 s:\n{log.read_text()}")


def _wait_until_all_gone(script: subprocess.Popen, var_dir: Path, how: str) -> int:
    deadline = time.monotonic() + STOP_WITHIN_S
    while time.monotonic() < deadline:
        script.poll()
        left = _ours(var_dir)
        if not left and script.returncode is not None:
            return script.returncode
        time.sleep(0.2)
    left = _ours(var_dir)
    for process in left:  # clean up for the next test, then fail
        process.kill()
    pytest.fail(
        f"{STOP_WITHIN_S:.0f} s after {how}, still running: {_describe(left) or 'the script'}"
    )


@pytest.mark.slow
def test_sigterm_to_make_run_stops_web_and_worker_like_ctrl_c_does(tmp_path):
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    port = _free_port()
    logs = [tmp_path / f"start-{n}.log" for n in (1, 2, 3)]

    script = _start(var_dir, port, logs[0])
    try:
        _wait_until_healthy(script, port, logs[0])
        names = sorted(" ".join(p.cmdline()[1:3]) for p in _ours(var_dir) if p.pid != script.pid)
        assert "manage.py qcluster" in names and "manage.py runserver" in names, names

        script.send_signal(signal.SIGTERM)  # to the script alone, as a process manager does
        assert _wait_until_all_gone(script, var_dir, "SIGTERM to run-local.sh") == 143

        make = _start(var_dir, port, logs[1], through_make=True)
        _wait_until_healthy(make, port, logs[1])
        make.send_signal(signal.SIGTERM)  # a process manager that runs `make run`
        assert _wait_until_all_gone(make, var_dir, "SIGTERM to make run") != 0

        make = _start(var_dir, port, logs[2], through_make=True)
        _wait_until_healthy(make, port, logs[2])
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        assert _wait_until_all_gone(make, var_dir, "Ctrl-C (SIGINT to the group)") != 0
    finally:
        for process in _ours(var_dir):
            process.kill()

    first, *later = (log.read_text() for log in logs)
    assert "local.env: a generated DJANGO_SECRET_KEY" in first
    assert all("local.env" not in text for text in later)  # the file is written once
    assert (var_dir / "local.env").stat().st_mode & 0o077 == 0  # it holds a secret
    assert "secret key:      sk_" in first
    assert all("exists; see below" in text and "--rotate-keys" in text for text in later)
