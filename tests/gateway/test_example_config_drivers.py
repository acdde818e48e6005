"""The gateway's example config shows a device entry for every installed driver, and every one validates."""

from __future__ import annotations

import re
from pathlib import Path

from healthhut.drivers import available_drivers
from healthhut.drivers.contec_cms50 import Cms50Config
from healthhut.drivers.healthypi import HealthyPiConfig
from healthhut.gateway.config import load_config
from tests.conftest import ROOT

EXAMPLE = ROOT / "gateway" / "gateway.example.toml"
DEVICES_START = "# One [[devices]] entry per instrument."
# A commented-out device entry: its table header and its "key = value" lines.
COMMENTED_TOML = re.compile(r"^# (\[\[devices\]\]|[a-z_]+ = .+)$")


def uncommented_devices(text: str) -> str:
    """The example with every commented-out device entry switched on."""
    head, marker, devices = text.partition(DEVICES_START)
    assert marker, f"{EXAMPLE.name} has lost the line {DEVICES_START!r}"
    lines = [line[2:] if COMMENTED_TOML.match(line) else line for line in devices.splitlines()]
    return head + marker + "\n".join(lines) + "\n"


def test_every_driver_has_an_example_entry_that_validates(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(uncommented_devices(EXAMPLE.read_text()))
    config = load_config(path)
    assert sorted({device.driver for device in config.device_configs}) == available_drivers()
    cms50 = [d.protocol for d in config.device_configs if isinstance(d, Cms50Config)]
    assert sorted(cms50) == ["5-byte", "9-byte"]
    healthypi = [d.board for d in config.device_configs if isinstance(d, HealthyPiConfig)]
    assert sorted(healthypi) == ["v4", "v5"]


def test_only_the_first_oximeter_is_switched_on() -> None:
    # Every other entry needs hardware the hut may not have; a stray uncommented one would make the
    # gateway wait for a device that is not there.
    assert [(d.driver, d.name) for d in load_config(EXAMPLE).device_configs] == [("contec-cms50", "oximeter-1")]
