"""Repeated warnings are rate-limited per message template; the JSON formatter writes one object a line."""

from __future__ import annotations

import json
import logging

from healthhut.protocol.cli import JsonFormatter, RepeatFilter


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def test_a_repeating_warning_is_let_through_once_a_minute_and_says_how_many_were_held() -> None:
    now = [0.0]
    handler = Collect()
    handler.addFilter(RepeatFilter(60.0, clock=lambda: now[0]))
    log = logger_with(handler, "test.repeat")
    for second in range(120):  # a device failing every half second for a minute
        now[0] = second / 2
        log.warning("device %s not available: %s", "ox-1", f"attempt {second}")
        log.info("a routine line %d", second)  # INFO is never held back
    log.error("device %s not available: %s", "ox-1", "different level")  # another level, its own limit
    now[0] = 61.0
    log.warning("device %s not available: %s", "ox-1", "still")
    warnings = [line for line in handler.lines if "not available" in line]
    assert warnings == [
        "device ox-1 not available: attempt 0",
        "device ox-1 not available: different level",
        "device ox-1 not available: still (and 119 more like it in the last 60 s)",
    ]
    assert sum("a routine line" in line for line in handler.lines) == 120


def test_json_lines_for_journald() -> None:
    handler = Collect()
    handler.setFormatter(JsonFormatter())
    logger_with(handler, "test.json").warning("spool %s is full", "main")
    entry = json.loads(handler.lines[0])
    assert (entry["level"], entry["logger"], entry["msg"]) == ("warning", "test.json", "spool main is full")
