"""Telling systemd how a service is (sd_notify, without libsystemd), for hut-gateway and hut-collector.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET``
(a leading ``@`` means the abstract namespace). ``keep_notifying`` pings ``WATCHDOG=1`` only while the
caller's liveness check finds no problem, so systemd restarts a service whose event loop is stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# How often STATUS= is refreshed when systemd expects no watchdog pings.
STATUS_INTERVAL_S = 15.0


class Notifier:
    """Sends notifications to systemd. Without ``$NOTIFY_SOCKET`` (not started by systemd) it does nothing."""

    def __init__(self, address: str | None) -> None:
        if address is not None and not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET %r is neither a path nor an abstract name; not notifying systemd", address)
            address = None
        self.address = address
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram. False if not sent (systemd treats a lost one as unsaid)."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop on a full socket buffer: a dropped ping is a missed ping.
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(assignments).encode(), target)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
            self._failed = True
            return False
        if self._failed:
            log.info("notifying systemd at %s again", self.address)
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def status(self, status: str) -> bool:
        return self.send(*_status(status))

    def watchdog(self, status: str | None = None) -> bool:
        return self.send("WATCHDOG=1", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status(text: str | None) -> tuple[str, ...]:
    # One line: a newline would start a new assignment.
    return () if text is None else ("STATUS=" + " ".join(text.splitlines()),)


def watchdog_interval(environ: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """Seconds between pings, half of ``$WATCHDOG_USEC`` as sd_watchdog_enabled(3) advises; None when
    systemd expects none (no watchdog, or one meant for another process)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", "0"))
        owner = int(environ.get("WATCHDOG_PID", "0"))
    except ValueError:
        log.warning("ignoring a malformed WATCHDOG_USEC or WATCHDOG_PID")
        return None
    if usec <= 0 or (owner and owner != (os.getpid() if pid is None else pid)):
        return None
    return usec / 2_000_000


async def keep_notifying(
    notifier: Notifier,
    *,
    problem: Callable[[], str | None],
    status: Callable[[], str],
    ready: asyncio.Event | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Say READY=1 once ``ready`` is set (at once without one), then, every half watchdog period, ping
    WATCHDOG=1 with a fresh STATUS= while ``problem()`` is None. When it names a problem, the pings stop
    and STATUS= says what it is, so that ``systemctl status`` shows why systemd restarted the service."""
    if not notifier.enabled:
        return
    interval = watchdog_interval(environ)
    period = interval or STATUS_INTERVAL_S
    announced = False
    was_live = True
    while True:
        trouble = problem()
        if was_live and trouble is not None:
            log.error("%s; not pinging the systemd watchdog", trouble)
        elif not was_live and trouble is None:
            log.info("all parts are live again; pinging the systemd watchdog")
        was_live = trouble is None
        assignments = []
        if not announced and (ready is None or ready.is_set()):
            assignments.append("READY=1")
            announced = True
        if trouble is None and interval is not None:
            assignments.append("WATCHDOG=1")
        notifier.send(*assignments, *_status(trouble or status()))
        if announced or ready is None:
            await asyncio.sleep(period)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), period)
