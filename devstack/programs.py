"""Run healthhut's own programs (hut-gateway, hut-collector, hut-sim) as child processes with log files.

The demo and the end-to-end tests use this, so that both exercise the programs exactly as installed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

MODULES = {
    "hut-gateway": "healthhut.gateway.cli",
    "hut-collector": "healthhut.collector.cli",
    "hut-sim": "healthhut.firmware_sim.cli",
}


class Programs:
    """Started programs by name; on exit every one still running is stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, program: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.log_path(name), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", MODULES[program], *args], stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        return process

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log(self, name: str, tail: int = 4000) -> str:
        return self.log_path(name).read_text(errors="replace")[-tail:]

    def wait_for_log(self, name: str, text: str, timeout: float = 20.0) -> None:
        """Block until ``text`` appears in the program's log (how a program says it is ready)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_path(name).read_text(errors="replace"):
            self.check_running(name)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not log {text!r} within {timeout} s:\n{self.log(name)}")
            time.sleep(0.05)

    def check_running(self, *names: str) -> None:
        for name in names:
            code = self.processes[name].poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with {code}:\n{self.log(name)}")

    def stop(self, name: str, timeout: float = 20.0) -> int:
        """SIGTERM and wait (the programs drain on SIGTERM); SIGKILL if they overrun ``timeout``."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise RuntimeError(f"{name} did not stop within {timeout} s:\n{self.log(name)}") from None
        return process.returncode

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()
