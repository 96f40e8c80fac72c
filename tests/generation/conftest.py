from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """Tiny random-weight Wan pipelines of the real architectures, saved once per session.

    One directory per registry name (tests/support/tiny_wan.BUILDERS): the three Wan2.2 models
    and the two VACE models (Wan2.2-VACE-Fun-A14B with two experts, Wan2.1-VACE-14B with one).
    """
    import torch

    from tests.support import tiny_wan

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-wan")
    tiny_wan.build_all(root)
    return root
