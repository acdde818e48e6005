"""A fake BlueZ on a private system bus for every BLE test; bleak finds it through DBUS_SYSTEM_BUS_ADDRESS.

A missing dbus-daemon or python-dbusmock fails these tests (ServerError); it never skips them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from healthhut.devstack.fakebluez import FakeBlueZ


@pytest.fixture
def fake_bluez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBlueZ]:
    with FakeBlueZ(tmp_path / "bluez", advertise_interval=0.05) as fake:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", fake.bus_address)
        yield fake
