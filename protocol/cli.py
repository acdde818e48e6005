"""Conventions the three programs share on the command line: logging setup and exit codes."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for journald and log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RepeatFilter(logging.Filter):
    """Rate-limits warnings and errors, so a device failing every second for a night does not fill the SD card.

    The same message (logger, level and the text with its arguments filled in) is let through once per
    ``window`` seconds: ``device ox-1 not available`` does not hold back ``device ox-2 not available``.
    A template whose arguments change at every call (an attempt number, a byte count) would slip past that,
    so each template (the text before its arguments are filled in) also lets through at most
    ``per_template`` distinct messages per window. The next one let through says how many were held back.
    Both memories are least-recently-used caches of at most ``max_keys`` entries, so a message with an
    ever-changing argument cannot grow them without bound; a key pushed out forgets its count.
    """

    def __init__(
        self,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        per_template: int = 10,
        max_keys: int = 1024,
    ) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self.per_template = per_template
        self.max_keys = max_keys
        # (logger, level, message) -> [when last let through, how many held back since]
        self._messages: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()
        # (logger, level, template) -> [when its window began, let through in it, held back since last let through]
        self._templates: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            rendered = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad argument is the handler's to report (handleError); a filter
            # that raised would throw it at the code that logged
            rendered = str(record.msg)
        now = self.clock()
        message = _touch(self._messages, (record.name, record.levelno, rendered), [-math.inf, 0], self.max_keys)
        if now - message[0] < self.window:
            message[1] += 1
            return False
        template = _touch(self._templates, (record.name, record.levelno, str(record.msg)), [now, 0, 0], self.max_keys)
        if now - template[0] >= self.window:
            template[0], template[1] = now, 0
        if template[1] >= self.per_template:
            template[2] += 1
            return False
        template[1] += 1
        held = int(message[1] + template[2])
        message[0], message[1], template[2] = now, 0, 0
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.window:.0f} s)"
        return True


def _touch(cache: OrderedDict[Any, list[float]], key: Any, new: list[float], most: int) -> list[float]:
    """The entry for ``key``, made most recently used (added as ``new`` if missing, evicting the oldest)."""
    entry = cache.get(key)
    if entry is None:
        entry = cache[key] = new
        if len(cache) > most:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return entry


def syslog_priority(levelno: int) -> int:
    """The syslog level (sd-daemon(3), syslog(3)) for a logging level: DEBUG 7, INFO 6, WARNING 4, ERROR 3,
    CRITICAL 2, and a custom level as the next standard one below it."""
    for floor, priority in ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6)):
        if levelno >= floor:
            return priority
    return 7


class PriorityPrefix(logging.Formatter):
    """Puts ``<N>``, the record's syslog level, before each line another formatter writes.

    systemd.exec(5), SyslogLevelPrefix=: "If true and StandardOutput= or StandardError= are set to journal
    or kmsg (...), log lines written by the executed process that are prefixed with a log level will be
    processed with this log level set but the prefix removed" (the default is true). So the journal keeps
    the JSON as it was written, and ``journalctl -p err`` finds the errors. Only a record's first line
    carries the prefix: JSON has one, and a text traceback's further lines go in at the default level."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{self.inner.format(record)}"


def stderr_is_journal(environ: Mapping[str, str] = os.environ, stream: Any = None) -> bool:
    """Whether ``stream`` (standard error) is connected to the journal. systemd.exec(5), $JOURNAL_STREAM:
    it "contains the device and inode numbers of the connection file descriptor, formatted in decimal,
    separated by a colon", and they "should be compared with the values set in the environment variable",
    since a child whose output was redirected may inherit the variable. So ``hut-gateway run --log-format
    json | jq`` run from a service's shell sees no prefix."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        found = os.fstat((sys.stderr if stream is None else stream).fileno())
    except (OSError, ValueError, AttributeError):  # closed, or not a file (a test's StringIO)
        return False
    return (found.st_dev, found.st_ino) == (int(device), int(inode))


def print_config_error(program: str, error: object) -> None:
    """Say on standard error that the config is wrong, before logging is set up: the programs then exit 2,
    which their units do not restart, so under systemd this line is all the journal has. It carries the
    error priority there (``<3>``), as log lines do, so ``journalctl -p err`` shows it."""
    prefix = f"<{syslog_priority(logging.ERROR)}>" if stderr_is_journal() else ""
    print(f"{prefix}{program}: config error: {error}", file=sys.stderr)


def configure_logging(level: str = "info", fmt: str = "text", environ: Mapping[str, str] = os.environ) -> None:
    """Only entry points call this; library code just uses ``logging.getLogger(__name__)``.

    When standard error goes to the journal (as the units run the programs), each line starts with its
    syslog level, ``<3>{"ts": ...}`` for an error, which journald takes as the entry's priority."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = (
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    handler.setFormatter(PriorityPrefix(formatter) if stderr_is_journal(environ, sys.stderr) else formatter)
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # paho logs every packet at DEBUG through aiomqtt's logger; keep it out of INFO-level runs.
    logging.getLogger("mqtt").setLevel(max(logging.WARNING, root.level))


def add_logging_arguments(parser: Any) -> None:
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="json for journald")
