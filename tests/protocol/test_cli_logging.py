"""Repeated warnings are rate-limited per message, and per template when an argument never repeats;
the JSON formatter writes one object a line, each with journald's ``<N>`` priority when stderr is the journal."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthhut.devstack.programs import Programs
from healthhut.devstack.servers import free_port
from healthhut.protocol.cli import JsonFormatter, RepeatFilter, stderr_is_journal


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


# What systemd.exec(5) says journald does with a line on a service's stderr (SyslogLevelPrefix=, on by
# default): "<N>" sets the entry's priority and is removed.
PREFIXED = re.compile(r"<([0-7])>(\{.*\})")
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}

LOG_EACH_LEVEL = """
import logging, sys
from healthhut.protocol.cli import configure_logging
configure_logging("debug", sys.argv[1])
log = logging.getLogger("child")
log.debug("debug line")
log.info("info line")
log.warning("warning line")
log.error("error line: %s", "two\\nlines")
log.critical("critical line")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("failed")
"""


def journal_stream(fd: int) -> str:
    """$JOURNAL_STREAM as systemd sets it for a service whose stderr is ``fd``: device:inode."""
    found = os.fstat(fd)
    return f"{found.st_dev}:{found.st_ino}"


def run_child(fmt: str, journal: str | None) -> list[str]:
    """A real child process logging once at each level, its stderr a pipe (as journald's is a socket)."""
    read, write = os.pipe()
    env = {key: value for key, value in os.environ.items() if key != "JOURNAL_STREAM"}
    if journal is not None:
        env["JOURNAL_STREAM"] = journal_stream(write) if journal == "this pipe" else journal
    try:
        subprocess.run([sys.executable, "-c", LOG_EACH_LEVEL, fmt], stderr=write, env=env, check=True, timeout=60)
    finally:
        os.close(write)
    with os.fdopen(read) as pipe:
        return pipe.read().splitlines()


def test_json_lines_to_the_journal_carry_their_syslog_priority() -> None:
    lines = run_child("json", journal="this pipe")
    assert len(lines) == 6  # one line each, the traceback and the newline inside the JSON
    entries = []
    for line in lines:
        match = PREFIXED.fullmatch(line)
        assert match, line
        entry = json.loads(match[2])  # what journald keeps once it has taken the prefix off
        assert int(match[1]) == PRIORITY[entry["level"]]
        entries.append(entry)
    assert lines[3].startswith('<3>{"ts": ')
    assert entries[3]["msg"] == "error line: two\nlines"
    assert (entries[5]["level"], entries[5]["msg"]) == ("error", "failed")
    assert "ZeroDivisionError" in entries[5]["exc"]


def test_text_lines_to_the_journal_carry_it_too() -> None:
    lines = run_child("text", journal="this pipe")
    first = [line[:3] for line in lines if " child: " in line]
    assert first == ["<7>", "<6>", "<4>", "<3>", "<2>", "<3>"]
    # A record's further lines (the newline in the error, the traceback) go in at the unit's default level.
    assert len(lines) > len(first)
    assert not any(line.startswith("<") for line in lines if " child: " not in line)


def test_no_prefix_when_stderr_is_not_the_journal() -> None:
    # JOURNAL_STREAM inherited by a process whose stderr was redirected (to a pipe into jq, say), or unset.
    for journal in ("1:2", None):
        lines = run_child("json", journal)
        assert [json.loads(line)["level"] for line in lines] == [
            "debug",
            "info",
            "warning",
            "error",
            "critical",
            "error",
        ]


def test_stderr_is_journal_compares_device_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "err", "w") as stream:
        assert stderr_is_journal({"JOURNAL_STREAM": journal_stream(stream.fileno())}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "0:0"}, stream)
        assert not stderr_is_journal({"JOURNAL_STREAM": "journal"}, stream)
        assert not stderr_is_journal({}, stream)


def test_the_gateway_under_journald_writes_priorities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    good = f'hut_id = "hut-prefix"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {free_port()}\n'
    config.write_text(good)
    with Programs(tmp_path / "logs") as programs:
        log = programs.log_path("gateway")
        log.touch()
        with open(log, "rb") as opened:  # the file the gateway's stderr will be, as the journal's socket is
            stream = journal_stream(opened.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", stream)
        gateway = programs.start("gateway", "hut-gateway", "run", "--config", str(config), "--log-format", "json")
        programs.wait_for_log("gateway", "starting")
        config.write_text(good + "[mqtt]\n")  # a duplicate table: the reload is refused, an error
        gateway.send_signal(signal.SIGHUP)
        programs.wait_for_log("gateway", "reload refused")
        time.sleep(0.1)
        assert programs.stop("gateway") == 0
        lines = log.read_text().splitlines()
    levels = []
    for line in lines:
        match = PREFIXED.fullmatch(line)
        assert match, line
        entry = json.loads(match[2])
        assert int(match[1]) == PRIORITY[entry["level"]]
        levels.append(entry["level"])
    assert {"info", "error"} <= set(levels)
    assert any(line.startswith("<3>") and "reload refused" in line for line in lines)


@pytest.mark.parametrize(
    ("program", "journal"), [("hut-gateway", True), ("hut-collector", True), ("hut-gateway", False)]
)
def test_a_config_error_reaches_the_journal_as_an_error(tmp_path: Path, program: str, journal: bool) -> None:
    # Printed before logging is set up, and the program exits 2 (not restarted): the one line the journal has.
    config = tmp_path / "broken.toml"
    config.write_text("[mqtt\n")
    stderr = tmp_path / "stderr"
    env = {key: value for key, value in os.environ.items() if key != "JOURNAL_STREAM"}
    with open(stderr, "wb") as out:
        if journal:
            env["JOURNAL_STREAM"] = journal_stream(out.fileno())
        executable = str(Path(sys.executable).parent / program)
        done = subprocess.run([executable, "check-config", str(config)], stderr=out, env=env, timeout=60, check=False)
    assert done.returncode == 2
    line = stderr.read_text().splitlines()[0]
    expected = f"{program}: config error: {config}:1:"
    assert line == ("<3>" if journal else "") + expected + line.split(expected, 1)[1], line
    assert line.startswith("<3>") is journal
