"""Repeated warnings are rate-limited per message, and per template when an argument never repeats;
the JSON formatter writes one object a line."""

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
        log.warning("device %s not available: %s", "ox-1", "no reply")
        log.info("a routine line %d", second)  # INFO is never held back
    log.error("device %s not available: %s", "ox-1", "no reply")  # another level, its own limit
    now[0] = 61.0
    log.warning("device %s not available: %s", "ox-1", "no reply")
    warnings = [line for line in handler.lines if "not available" in line]
    assert warnings == [
        "device ox-1 not available: no reply",
        "device ox-1 not available: no reply",
        "device ox-1 not available: no reply (and 119 more like it in the last 60 s)",
    ]
    assert sum("a routine line" in line for line in handler.lines) == 120


def test_the_same_template_with_other_arguments_is_another_message() -> None:
    now = [0.0]
    handler = Collect()
    handler.addFilter(RepeatFilter(60.0, clock=lambda: now[0]))
    log = logger_with(handler, "test.arguments")
    for second in range(30):
        now[0] = float(second)
        log.warning("device %s not available", "ox-1")
        log.warning("device %s not available", "ox-2")  # not held back by ox-1's
    now[0] = 60.0
    log.warning("device %s not available", "ox-2")
    log.warning("device %s not available", "bp-1")
    assert handler.lines == [
        "device ox-1 not available",
        "device ox-2 not available",
        "device ox-2 not available (and 29 more like it in the last 60 s)",
        "device bp-1 not available",
    ]


def test_an_ever_changing_argument_is_held_after_a_few_per_template() -> None:
    now = [0.0]
    handler = Collect()
    handler.addFilter(RepeatFilter(60.0, clock=lambda: now[0], per_template=3))
    log = logger_with(handler, "test.changing")
    for attempt in range(100):  # each message differs, so only the template's budget holds them back
        now[0] = attempt / 2
        log.warning("device ox-1 not available: attempt %d", attempt)
    log.warning("spool %s is full", "main")  # another template, its own budget
    now[0] = 60.0
    log.warning("device ox-1 not available: attempt %d", 100)
    assert handler.lines == [
        "device ox-1 not available: attempt 0",
        "device ox-1 not available: attempt 1",
        "device ox-1 not available: attempt 2",
        "spool main is full",
        "device ox-1 not available: attempt 100 (and 97 more like it in the last 60 s)",
    ]


def test_memory_of_messages_is_bounded_and_least_recently_used_goes_first() -> None:
    now = [0.0]
    handler = Collect()
    repeat = RepeatFilter(60.0, clock=lambda: now[0], per_template=1_000_000, max_keys=3)
    handler.addFilter(repeat)
    log = logger_with(handler, "test.bounded")
    for name in ("a", "b", "c"):
        log.warning("device %s not available", name)
    log.warning("device %s not available", "a")  # held, and now the most recently used
    log.warning("device %s not available", "d")  # pushes out b, the least recently used
    log.warning("device %s not available", "a")  # still remembered: held
    log.warning("device %s not available", "b")  # forgotten: let through again
    assert [line.split()[1] for line in handler.lines] == ["a", "b", "c", "d", "b"]
    for n in range(10_000):  # an argument that never repeats cannot grow the filter's memory ...
        log.warning("read %d bytes of garbage", n)
        log.warning(f"unexpected byte {n:#x}")  # ... nor can a caller that formats its own messages
    assert (len(repeat._messages), len(repeat._templates)) == (3, 3)


def test_json_lines_for_journald() -> None:
    handler = Collect()
    handler.setFormatter(JsonFormatter())
    logger_with(handler, "test.json").warning("spool %s is full", "main")
    entry = json.loads(handler.lines[0])
    assert (entry["level"], entry["logger"], entry["msg"]) == ("warning", "test.json", "spool main is full")


def test_arguments_that_do_not_fit_the_template_do_not_raise_from_the_filter() -> None:
    repeat = RepeatFilter(60.0, clock=lambda: 0.0)
    record = logging.LogRecord("test.bad", logging.ERROR, __file__, 1, "device %s %s", ("ox-1",), None)
    assert repeat.filter(record)
    assert not repeat.filter(record)
