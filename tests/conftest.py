"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def davis2016_root() -> Path:
    """The DAVIS 2016 folder (CVOS_DAVIS2016, else <repo>/../shared/data/davis2016), or skip."""
    root = Path(
        os.environ.get("CVOS_DAVIS2016", REPO_ROOT.parent / "shared" / "data" / "davis2016")
    )
    if not (root / "JPEGImages" / "480p").is_dir():
        pytest.skip(f"DAVIS 2016 not found at {root} (set CVOS_DAVIS2016 to its folder)")
    return root
