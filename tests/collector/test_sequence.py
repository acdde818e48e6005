"""The sequence ledger: duplicates, gaps after the grace time, late arrivals, lost counters, and one ledger
shared by several collector processes through the same file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from healthhut.collector.sequence import Arrival, SequenceLedger

GRACE = 60.0


def arrivals(hut: str, seqs: list[int], boot: str = "boot1") -> list[Arrival]:
    return [Arrival(hut, boot, seq) for seq in seqs]


def test_in_order_numbers_leave_nothing_behind(tmp_path: Path) -> None:
    ledger = SequenceLedger(tmp_path / "seq.sqlite", GRACE)
    assert ledger.record(arrivals("h1", list(range(5, 105))), now=1000.0) == []
    assert ledger.sweep(now=1e9) == []
    assert ledger.low_water("h1") == 104


def test_a_number_seen_twice_is_a_duplicate(tmp_path: Path) -> None:
    ledger = SequenceLedger(tmp_path / "seq.sqlite", GRACE)
    ledger.record(arrivals("h1", [1, 2, 3, 5]), now=1000.0)
    events = ledger.record(arrivals("h1", [2, 3, 5, 6]), now=1001.0)
    assert [(e.event, e.first, e.last, e.count) for e in events] == [("duplicate", 2, 3, 2), ("duplicate", 5, 5, 1)]


def test_a_hole_becomes_a_gap_only_after_the_grace_time(tmp_path: Path) -> None:
    ledger = SequenceLedger(tmp_path / "seq.sqlite", GRACE)
    ledger.record(arrivals("h1", [1, 2, 6, 7, 10]), now=1000.0)
    assert ledger.sweep(now=1000.0 + GRACE - 1) == []
    # 3-5 arrive in time: no gap there.
    ledger.record(arrivals("h1", [3, 4, 5]), now=1030.0)
    gaps = ledger.sweep(now=1000.0 + GRACE + 1)
    assert [(g.hut_id, g.event, g.first, g.last, g.count) for g in gaps] == [("h1", "gap", 8, 9, 2)]
    assert ledger.low_water("h1") == 10
    # Reported once, not at every sweep.
    assert ledger.sweep(now=1e9) == []
    # A number of the gap that turns up after all is late, not a duplicate.
    assert [(e.event, e.first) for e in ledger.record(arrivals("h1", [9]), now=2000.0)] == [("late", 9)]
    assert [e.event for e in ledger.events("h1")] == ["late", "gap"]


def test_a_lost_counter_under_a_new_boot_is_a_restart(tmp_path: Path) -> None:
    ledger = SequenceLedger(tmp_path / "seq.sqlite", GRACE)
    ledger.record(arrivals("h1", [500, 501]), now=1000.0)
    events = ledger.record(arrivals("h1", [1, 2], boot="boot2"), now=1001.0)
    assert [(e.event, e.first) for e in events] == [("restart", 1)]
    # An old message of the first boot, resent later, is late: not a second restart, and no gap 3-500.
    assert [e.event for e in ledger.record(arrivals("h1", [501]), now=1002.0)] == ["late"]
    assert ledger.record(arrivals("h1", [3], boot="boot2"), now=1003.0) == []
    assert ledger.sweep(now=1e9) == []
    assert ledger.low_water("h1") == 3


def test_huts_are_kept_apart(tmp_path: Path) -> None:
    ledger = SequenceLedger(tmp_path / "seq.sqlite", GRACE)
    ledger.record(arrivals("h1", [1, 2]) + arrivals("h2", [1, 3]), now=1000.0)
    gaps = ledger.sweep(now=2000.0)
    assert [(g.hut_id, g.first, g.last) for g in gaps] == [("h2", 2, 2)]


def _record_share(path: str, seqs: list[int]) -> None:
    ledger = SequenceLedger(Path(path), GRACE)
    for seq in seqs:
        ledger.record(arrivals("h1", [seq]), now=1000.0)
    ledger.close()


def test_collector_processes_sharing_a_file_see_one_sequence(tmp_path: Path) -> None:
    # Two processes each get every other message, as members of a shared subscription do.
    path = str(tmp_path / "seq.sqlite")
    SequenceLedger(Path(path), GRACE).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_record_share, args=(path, list(range(1 + k, 401, 2)))) for k in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    ledger = SequenceLedger(Path(path), GRACE)
    assert ledger.sweep(now=1e9) == []
    assert ledger.low_water("h1") == 400
    assert ledger.events() == []
