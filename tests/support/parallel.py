"""Requests fired at a real server at the same moment, for races that only show in parallel.

Every request is built first; the threads then wait on one barrier and send together, so the
server sees them overlap as it would a burst from a tenant's servers.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

# Loopback only: a proxy from the environment must not sit between the test and its server.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Outgoing:
    url: str
    data: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def outcome(self) -> tuple[int, str]:
        """(status, problem code); the code is "" for a success."""
        return self.status, str(self.body.get("code", "")) if self.status >= 400 else ""


def json_post(url: str, raw_key: str, body: dict[str, Any]) -> Outgoing:
    return Outgoing(
        url,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"},
    )


def multipart_post(url: str, raw_key: str, fields: dict[str, Any]) -> Outgoing:
    return Outgoing(
        url,
        encode_multipart(BOUNDARY, fields),
        {"Authorization": f"Bearer {raw_key}", "Content-Type": MULTIPART_CONTENT},
    )


def _body(raw: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(raw or b"{}")
    except ValueError:
        return {"raw": raw[:500].decode(errors="replace")}
    return parsed if isinstance(parsed, dict) else {"list": parsed}


def send_at_once(requests: list[Outgoing], *, timeout_s: float = 120) -> list[Answer]:
    """POST every request from its own thread, all released together; answers in order."""
    barrier = threading.Barrier(len(requests))

    def send(outgoing: Outgoing) -> Answer:
        request = urllib.request.Request(
            outgoing.url, data=outgoing.data, headers=outgoing.headers, method="POST"
        )
        barrier.wait(timeout=60)
        try:
            with _OPENER.open(request, timeout=timeout_s) as response:
                return Answer(response.status, _body(response.read()))
        except urllib.error.HTTPError as error:
            return Answer(error.code, _body(error.read()))

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


def outcomes(answers: list[Answer]) -> Counter[tuple[int, str]]:
    return Counter(answer.outcome for answer in answers)
