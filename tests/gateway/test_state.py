"""Counters that survive restarts, never reuse a number, and survive a damaged state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthhut.gateway.state import DEVICE_BLOCK, GatewayState


def test_hut_sequence_continues_across_restarts(tmp_path: Path) -> None:
    first = GatewayState(tmp_path)
    assert [first.next_hut_seq() for _ in range(3)] == [1, 2, 3]
    again = GatewayState(tmp_path)
    assert again.next_hut_seq() == 4
    assert again.boot_id != first.boot_id


def test_device_numbers_are_never_reused_after_a_crash(tmp_path: Path) -> None:
    state = GatewayState(tmp_path)
    handed_out = [state.next_device_seq("ox-1") for _ in range(DEVICE_BLOCK + 5)]
    assert handed_out == list(range(DEVICE_BLOCK + 5))
    # A crash here loses the in-memory position; the next process must start past everything issued.
    after_crash = GatewayState(tmp_path)
    assert after_crash.next_device_seq("ox-1") >= DEVICE_BLOCK + 5
    assert after_crash.next_device_seq("ox-2") == 0


def test_state_file_is_replaced_atomically(tmp_path: Path) -> None:
    state = GatewayState(tmp_path)
    state.next_hut_seq()
    assert json.loads((tmp_path / "state.json").read_text())["hut_seq"] == 1
    assert not (tmp_path / "state.tmp").exists()


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"hut_seq": "x", "device_limit": {}}', b"\x00" * 64])
def test_damaged_state_is_moved_aside_not_fatal(
    tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "state.json").write_bytes(damage)
    state = GatewayState(tmp_path)
    assert state.next_hut_seq() == 1
    aside = list(tmp_path.glob("state.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damage
    assert "unreadable" in caplog.text


def test_a_lost_state_file_starts_a_new_epoch(tmp_path: Path) -> None:
    first = GatewayState(tmp_path)
    first.next_device_seq("ox-1")
    assert GatewayState(tmp_path).epoch == first.epoch
    (tmp_path / "state.json").unlink()
    assert GatewayState(tmp_path).epoch != first.epoch
