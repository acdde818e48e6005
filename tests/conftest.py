"""Shared fixtures: one stack of real servers per test session, and fresh names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from healthhut.devstack import LocalStack

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The shared reference recordings: $HEALTHHUT_DATA, or ../shared/data as CI lays it out."""
    return Path(os.environ.get("HEALTHHUT_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """mosquitto, influxd 1.x and VictoriaMetrics on loopback. A missing server fails, never skips."""
    with LocalStack(tmp_path_factory.mktemp("servers")) as servers:
        yield servers


@pytest.fixture
def unique() -> str:
    """A short unique token for hut ids, database names and client ids, so tests never collide."""
    return uuid.uuid4().hex[:10]
