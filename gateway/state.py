"""Counters that must survive restarts: the per-hut message sequence and per-device reading numbers.

The file is replaced atomically (write, fsync, rename, fsync the folder), never rewritten in place.
Device numbers are reserved in blocks so that a reading costs no disk write; a restart skips the rest
of a block, which leaves harmless holes in device numbering but never reuses a number. If the file is
lost or damaged the counters restart under a new random ``epoch``, which goes into every
sequence-keyed observation id, so restarted numbers never repeat an old id.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

DEVICE_BLOCK = 1000


def durable_replace(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: write a temporary file, fsync it, rename
    it over ``path``, fsync the folder. A crash leaves the old file or the new one, never a mix."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class StateError(Exception):
    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class GatewayState:
    """Owns ``state.json`` in the state folder. Thread-safe: the uplink numbers messages off the loop."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "state.json"
        folder.mkdir(parents=True, exist_ok=True)
        self.boot_id = uuid.uuid4().hex[:16]
        self._lock = threading.Lock()
        self.epoch = uuid.uuid4().hex[:8]
        self._hut_seq = 0
        self._device_next: dict[str, int] = {}
        self._device_limit: dict[str, int] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            self._hut_seq = int(data["hut_seq"])
            self.epoch = str(data["epoch"])
            # Everything up to the saved limit may have been handed out before a crash.
            self._device_next = {k: int(v) for k, v in data["device_limit"].items()}
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError) as exc:
            # A damaged state file must not stop the hut; move it aside and say so loudly.
            aside = self.path.with_suffix(f".corrupt-{self.boot_id}")
            os.replace(self.path, aside)
            log.error("state file %s is unreadable (%s); moved to %s, counters restart", self.path, exc, aside)
            return
        self._device_limit = dict(self._device_next)

    def _save(self) -> None:
        data = {"epoch": self.epoch, "hut_seq": self._hut_seq, "device_limit": self._device_limit}
        durable_replace(self.path, json.dumps(data).encode())

    def next_hut_seq(self) -> int:
        """The next per-hut message number, durable before it is returned."""
        with self._lock:
            self._hut_seq += 1
            self._save()
            return self._hut_seq

    def next_device_seq(self, device: str) -> int:
        """A reading number unique over the device's life on this hut (within this ``epoch``)."""
        with self._lock:
            current = self._device_next.get(device, 0)
            if current >= self._device_limit.get(device, 0):
                self._device_limit[device] = current + DEVICE_BLOCK
                self._save()
            self._device_next[device] = current + 1
            return current
