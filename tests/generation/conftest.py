from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Tiny random-weight Wan2.2 pipelines of the real architectures, saved once per session."""
    import torch

    from tests.support import tiny_wan

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-wan")
    tiny_wan.build_all(root)
    return root
