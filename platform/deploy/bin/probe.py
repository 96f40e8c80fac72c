#!/usr/bin/env python
"""Health probes and the GPU worker's start-up check, for Docker, compose and Kubernetes.

    probe.py http PATH   GET http://127.0.0.1:$PORT/PATH (PORT defaults to 8000); healthy on 2xx.
    probe.py qcluster    this container's django-q2 cluster reported to the broker just now.
    probe.py pool        Q_CLUSTER_NAME names a GPU pool of REELCAST_POOLS and
                         REELCAST_HARDWARE_CLASS matches it (run before qcluster starts).

Exit status 0 means healthy; anything else prints one line saying why. Standard library only,
except `qcluster`, which sets Django up to read the cluster status the way django-q2 writes it.
Not a module of the application: nothing imports it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]


def probe_http(path: str) -> str | None:
    port = os.environ.get("PORT", "8000")
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    # Django answers 400 to a Host outside DJANGO_ALLOWED_HOSTS; `localhost` is the name every
    # deployment here lists for probes.
    request.add_header("Host", "localhost")
    try:
        with urllib.request.urlopen(request, timeout=4) as response:  # noqa: S310 (fixed http URL)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return f"GET {path}: {exc}"
    if 200 <= status < 300:
        return None
    return f"GET {path}: HTTP {status}"


def probe_qcluster() -> str | None:
    if not os.environ.get("REDIS_URL"):
        return "qcluster probe needs REDIS_URL: cluster status lives in the Redis broker"
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django_q.conf import Conf
    from django_q.status import Stat

    host = socket.gethostname()
    # A cluster re-saves its Stat every guard cycle (0.5 s) with a 3 s expiry, so a Stat for
    # this host exists only while this container's sentinel is alive and looping.
    mine = [stat for stat in Stat.get_all() if stat.host == host]
    if not mine:
        return f"no django-q2 cluster status from host {host} in the broker"
    alive = {Conf.STARTING, Conf.IDLE, Conf.WORKING}
    if not any(stat.status in alive for stat in mine):
        return f"cluster on {host} is {', '.join(str(stat.status) for stat in mine)}"
    return None


def probe_pool() -> str | None:
    name = os.environ.get("Q_CLUSTER_NAME", "")
    if not name or name == "default":
        return (
            "Q_CLUSTER_NAME must name a GPU pool (a key of REELCAST_POOLS), not the default cluster"
        )
    try:
        pools = json.loads(os.environ.get("REELCAST_POOLS", "") or "{}")
    except json.JSONDecodeError as exc:
        return f"REELCAST_POOLS is not JSON: {exc}"
    if name not in pools:
        return (
            f"Q_CLUSTER_NAME={name!r} is not a pool in REELCAST_POOLS ({', '.join(sorted(pools))})"
        )
    expected = pools[name].get("hardware_class", "")
    actual = os.environ.get("REELCAST_HARDWARE_CLASS", "")
    if expected != actual:
        return (
            f"pool {name!r} is hardware class {expected!r} but REELCAST_HARDWARE_CLASS={actual!r}: "
            "GPU-seconds would be billed at the wrong rate"
        )
    return None


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http" and argv[1].startswith("/"):
        problem = probe_http(argv[1])
    elif argv == ["qcluster"]:
        problem = probe_qcluster()
    elif argv == ["pool"]:
        problem = probe_pool()
    else:
        print("usage: probe.py http PATH | qcluster | pool", file=sys.stderr)
        return 2
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
