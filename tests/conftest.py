"""Shared fixtures: one stack of real servers per test session, and fresh names per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from healthhut.devstack import LocalStack
from tests.alert_servers import certificate, receiver  # noqa: F401 (fixtures for every test)

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


async def eventually(condition: Callable[[], object], within: float = 15.0) -> None:
    """Wait until ``condition()`` is true; fail the test if it is not within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {within} s")
        await asyncio.sleep(0.02)


def born_months_ago(months: int, today: date | None = None) -> date:
    """A birth date ``months`` completed months (and a few days) before today: an age band that stays
    right whatever day the suite runs on (a fixed date in a test ages with the calendar)."""
    today = today or date.today()
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    return date(year, month + 1, min(today.day, 28)) - timedelta(days=5)
