from __future__ import annotations

from pathlib import Path

import pytest

from store.records import SiteStore


@pytest.fixture
def store(tmp_path: Path) -> SiteStore:
    return SiteStore(tmp_path / "state", history_limit=3)
