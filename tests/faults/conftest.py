from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def queue_redis_url(request) -> str | None:
    """The broker this pass of the suite runs on: Redis (a database of this process's own)
    when REDIS_URL is set, else None for the ORM broker on the test database."""
    if not os.environ.get("REDIS_URL"):
        return None
    return request.getfixturevalue("redis_url")


@pytest.fixture(scope="session")
def tiny_ti2v(tmp_path_factory) -> Path:
    """The tiny random-weight Wan2.2 TI2V-5B pipeline (tests/support/tiny_wan), saved once;
    returns the model directory's parent (REELCAST_MODEL_DIR)."""
    import torch

    from tests.support import tiny_wan

    # Before any torch work in this process: forked workers must not inherit a thread pool.
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-wan-faults")
    tiny_wan.build_ti2v_5b(root / "wan2.2-ti2v-5b")
    return root
