"""The alert store's read-ahead (``prefetch``) is a hint only: a window of observations evaluated with it
leaves the store exactly as one evaluated a query at a time. Windows here hold several readings of one
subject and one device, so that later readings of a window see what earlier ones wrote."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from healthhut.collector.alerting.lifecycle import DEVICE_RULE, Lifecycle, Policy
from healthhut.collector.alerting.store import AlertTransaction, SqliteAlertStore
from healthhut.protocol import Flag, Kind, Observation, Subject
from tests.alerting.test_lifecycle import OLD, OTHER, Harness, bp, obs


class QueryAtATimeStore(SqliteAlertStore):
    """The same store with the hint ignored."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[AlertTransaction]:
        with super().transaction() as tx:
            tx.prefetch = lambda observation_keys, subject_keys: None
            yield tx


def lead_off(at: float, subject: Subject | None = OLD) -> Observation:
    return obs(Kind.ECG, at, subject, flags=frozenset({Flag.LEAD_OFF}), heart_rate=0)


def good_ecg(at: float) -> Observation:
    return obs(Kind.ECG, at, heart_rate=72, rr_intervals=(830.0, 835.0))


# (seconds after the window before, the window's readings)
WINDOWS: list[tuple[float, list[Observation]]] = [
    # A crisis, delivered twice within the window, and another subject's grade 3 with its confirming repeat.
    (0, [bp(200, 125), bp(200, 125), bp(180, 100, subject=OTHER), bp(181, 101, at=120, subject=OTHER)]),
    # A worse crisis, then a normal reading that starts its resolution, in one window.
    (60, [bp(210, 130, at=60), bp(120, 80, at=61)]),
    # A device failing three times (the technician's alert) and then recovering, all in one window.
    (30, [lead_off(90), lead_off(91, None), lead_off(92), good_ecg(93)]),
    # Failing again, then a redelivery of the whole first window, and anonymous readings.
    (30, [lead_off(120), lead_off(121), bp(200, 125), bp(190, 95, at=122, subject=None)]),
    (600, [bp(118, 76, at=700), good_ecg(701), lead_off(702), lead_off(703), lead_off(704)]),
]


def run(path: Path, store: SqliteAlertStore) -> dict[str, Any]:
    harness = Harness(path, Policy(levels=2))
    harness.store = store
    harness.lifecycle = Lifecycle(store, harness.policy, harness.route)
    ids: dict[str, str] = {}  # alert ids are random: name them by order of appearance

    def named(alert_id: str) -> str:
        return ids.setdefault(alert_id, f"alert-{len(ids)}")

    for after, window in WINDOWS:
        harness.feed(*window, after=after)
        harness.tick(1)
    db = sqlite3.connect(path)
    state = {
        "evaluated": db.execute("SELECT COUNT(*) FROM evaluated").fetchone()[0],
        "failures": sorted(db.execute("SELECT device_key, at FROM failures").fetchall()),
        "history": sorted(db.execute("SELECT * FROM history").fetchall()),
        "episodes": sorted(
            (named(e.alert_id), e.subject_key, e.rule, e.state, e.severity, tuple(e.observation_ids), e.flaps)
            for e in store.episodes(limit=1000)
        ),
        "outbox": [
            (i.channel, i.event, {k: named(v) if k == "alert_id" else v for k, v in i.document.items()})
            for i in sorted(store.outbox(limit=1000), key=lambda i: i.id)
        ],
    }
    db.close()
    return state


def test_prefetch_changes_nothing_but_the_number_of_queries(tmp_path: Path) -> None:
    with_hint = run(tmp_path / "a.sqlite", SqliteAlertStore(tmp_path / "a.sqlite"))
    without = run(tmp_path / "b.sqlite", QueryAtATimeStore(tmp_path / "b.sqlite"))
    assert with_hint == without
    # The scenario does what it is for: alerts fired and resolved, a technician called, a redelivery ignored.
    events = [(channel, event, document.get("rule")) for channel, event, document in with_hint["outbox"]]
    assert ("webhook", "fired", "bp.possible_crisis") in events
    assert ("webhook", "fired", DEVICE_RULE) in events and ("webhook", "resolved", DEVICE_RULE) in events
    assert (
        with_hint["evaluated"]
        == len({o.id for _, window in WINDOWS for o in window})
        < sum(len(window) for _, window in WINDOWS)
    )
