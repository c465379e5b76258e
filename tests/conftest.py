"""Test-wide setup: installed brgm plugins never leak into the suite, and a tiny generator is registered."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["BRGM_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # before brgm.core.plugins is imported

import pytest
import torch

from tests.plugins import test_plugin

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("BRGM_REFERENCE_FIXTURES", REPO.parent / "shared" / "fixtures"))

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def pytest_configure(config: pytest.Config) -> None:
    from brgm.core.plugins import pm

    # The suite's networks and images are tiny: one thread avoids oversubscribing the CI's two cores.
    torch.set_num_threads(1)
    # Reference comparisons need float32 arithmetic on CUDA too (TF32 convolutions carry ~1e-3 errors).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    if not pm.is_registered(test_plugin):
        pm.register(test_plugin, name="tests.plugins.test_plugin")


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """The shared StyleGAN2 reference fixture (skips with the reason when absent)."""
    path = FIXTURES / "stylegan2_ada_tiny"
    if not path.is_dir():
        pytest.skip(f"reference fixtures not found at {path} (set BRGM_REFERENCE_FIXTURES)")
    return path
