"""Gateway and collector configs: the shipped examples validate, and errors point at file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthhut.collector.config import load_config as load_collector_config
from healthhut.drivers.contec_cms50 import Cms50Config
from healthhut.gateway.cli import main as gateway_main
from healthhut.gateway.config import load_config
from healthhut.protocol.configfile import ConfigError
from tests.conftest import ROOT

GOOD = """\
hut_id = "hut-0001"
state_dir = "/tmp/state"

[mqtt]
host = "127.0.0.1"

[[devices]]
driver = "contec-cms50"
name = "ox-1"
path = "/dev/ttyUSB0"

[[devices]]
driver = "contec-cms50"
name = "ox-2"
path = "/dev/ttyUSB1"
"""


def test_shipped_examples_validate() -> None:
    config = load_config(ROOT / "gateway" / "gateway.example.toml")
    assert config.hut_id == "hut-0001"
    assert [type(d) for d in config.device_configs] == [Cms50Config]
    collector = load_collector_config(ROOT / "collector" / "collector.example.toml")
    assert collector.storage.type == "influxdb1"


def test_device_entries_are_validated_by_their_driver(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert [(d.name, d.path) for d in config.device_configs] == [  # type: ignore[attr-defined]
        ("ox-1", "/dev/ttyUSB0"),
        ("ox-2", "/dev/ttyUSB1"),
    ]


@pytest.mark.parametrize(
    ("edit", "line", "key", "words"),
    [
        (('path = "/dev/ttyUSB1"', 'paht = "/dev/ttyUSB1"'), 15, "devices[1].paht", "unknown key"),
        (('host = "127.0.0.1"', 'host = "127.0.0.1"\nport = 99999'), 6, "mqtt.port", "less than or equal"),
        (('hut_id = "hut-0001"', 'hut_id = "Hut 1"'), 1, "hut_id", "should match pattern"),
        (
            ('driver = "contec-cms50"\nname = "ox-2"', 'driver = "nonin"\nname = "ox-2"'),
            13,
            "devices[1].driver",
            "no driver named 'nonin'",
        ),
        (('name = "ox-2"', 'name = "ox-1"'), 14, "devices[1].name", "used twice"),
        (('name = "ox-1"\n', ""), 7, "devices[0].name", "required key is missing"),
        (("[mqtt]", "[mqtt"), 4, None, "not valid TOML"),
        # The kiosk API is for the kiosk on this Pi only: never on the network, and never by a name.
        (
            ("[mqtt]", '[identity]\nkey_file = "/k"\nkiosk_host = "0.0.0.0"\n[mqtt]'),
            6,
            "identity.kiosk_host",
            "loopback only",
        ),
        (
            ("[mqtt]", '[identity]\nkey_file = "/k"\nkiosk_host = "localhost"\n[mqtt]'),
            6,
            "identity.kiosk_host",
            "loopback address",
        ),
    ],
)
def test_errors_name_file_line_and_key(
    tmp_path: Path, edit: tuple[str, str], line: int, key: str | None, words: str
) -> None:
    path = tmp_path / "gateway.toml"
    assert edit[0] in GOOD
    path.write_text(GOOD.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (caught.value.path, caught.value.line, caught.value.key) == (str(path), line, key)
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}:")


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD)
    assert gateway_main(["check-config", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    path.write_text(GOOD.replace("ox-2", "ox-1"))
    assert gateway_main(["check-config", str(path)]) == 2
    assert f"{path}:14:" in capsys.readouterr().err
    assert gateway_main(["check-config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read config" in capsys.readouterr().err
