"""The outbox dispatcher against a real webhook receiver: retry with backoff, Retry-After, dead letters,
leases, and pictures drawn once per alert event."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from healthhut.collector.alerting.channels import WebhookChannel
from healthhut.collector.alerting.dispatch import Dispatcher
from healthhut.collector.alerting.notification import Attachment
from healthhut.collector.alerting.store import SqliteAlertStore
from tests.alert_servers import Receiver

SECRET = b"dispatch test secret"
DOCUMENT = {"alert_id": "a1", "rule": "bp.possible_crisis", "hut_id": "hut-1", "message": "x", "message_en": "x"}


def enqueue(store: SqliteAlertStore, document: Mapping[str, Any] = DOCUMENT, channel: str = "webhook") -> int:
    with store.transaction() as tx:
        return tx.enqueue(str(document["alert_id"]), channel, "fired", dict(document), (), time.time())


async def test_a_failed_delivery_is_retried_until_the_receiver_takes_it(tmp_path: Path, receiver: Receiver) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.sqlite")
    channel = WebhookChannel(receiver.url, SECRET, timeout_s=2)
    dispatcher = Dispatcher(store, {"webhook": channel}, backoff_max_s=0.2)
    receiver.status = 503
    enqueue(store)
    await dispatcher.drain()
    (item,) = store.outbox("pending")
    assert item.attempts == 1 and dispatcher.retried == 1
    receiver.status = 204
    await asyncio.sleep(0.3)
    await dispatcher.drain()
    assert store.outbox("pending") == [] and [i.attempts for i in store.outbox("sent")] == [2]
    assert len(receiver.requests) == 2
    await channel.close()


async def test_retry_after_is_honoured(tmp_path: Path, receiver: Receiver) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.sqlite")
    channel = WebhookChannel(receiver.url, SECRET, timeout_s=2)
    dispatcher = Dispatcher(store, {"webhook": channel}, backoff_max_s=0.1)
    receiver.status, receiver.headers = 429, {"Retry-After": "30"}
    enqueue(store)
    before = time.time()
    await dispatcher.drain()
    due = store.next_due()
    assert due is not None and due >= before + 30
    await channel.close()


async def test_a_permanent_refusal_and_the_last_attempt_are_dead_lettered(tmp_path: Path, receiver: Receiver) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.sqlite")
    channel = WebhookChannel(receiver.url, SECRET, timeout_s=2)
    dispatcher = Dispatcher(store, {"webhook": channel}, max_attempts=2, backoff_max_s=0.05)
    receiver.status = 400
    enqueue(store)
    await dispatcher.drain()
    (dead,) = store.outbox("dead")
    assert dead.attempts == 1 and "400" in (store.last_error(dead.id) or "")
    receiver.status = 500
    enqueue(store, {**DOCUMENT, "alert_id": "a2"})
    await dispatcher.drain()
    await asyncio.sleep(0.2)
    await dispatcher.drain()
    assert {i.alert_id for i in store.outbox("dead")} == {"a1", "a2"}
    assert store.outbox("pending") == []
    # A channel nobody configured: dead at once, with the reason.
    enqueue(store, {**DOCUMENT, "alert_id": "a3"}, channel="pager")
    await dispatcher.drain()
    (pager,) = [i for i in store.outbox("dead") if i.alert_id == "a3"]
    assert "pager" in (store.last_error(pager.id) or "")
    await channel.close()


async def test_a_leased_item_is_not_taken_twice_until_its_lease_runs_out(tmp_path: Path) -> None:
    first = SqliteAlertStore(tmp_path / "alerts.sqlite")
    second = SqliteAlertStore(tmp_path / "alerts.sqlite")  # another collector process on the same host
    enqueue(first)
    now = time.time()
    assert len(first.claim(now, 60, 10)) == 1
    assert second.claim(now, 60, 10) == []
    # The first dispatcher died mid-send: after the lease the item is taken up again.
    assert len(second.claim(now + 61, 60, 10)) == 1


async def test_pictures_are_drawn_once_per_alert_event_and_travel_with_it(tmp_path: Path, receiver: Receiver) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.sqlite")
    drawn: list[Mapping[str, Any]] = []

    async def render(attach: Mapping[str, Any]) -> tuple[Attachment, ...]:
        drawn.append(attach)
        return (Attachment("trend.png", "image/png", b"\x89PNG fake"),)

    channel = WebhookChannel(receiver.url, SECRET, timeout_s=2)
    other = WebhookChannel(receiver.url, SECRET, timeout_s=2, name="webhook-2")
    dispatcher = Dispatcher(store, {"webhook": channel, "webhook-2": other}, render)
    document = {**DOCUMENT, "attach": {"trend": {"name": "systolic"}}}
    enqueue(store, document)
    enqueue(store, document, channel="webhook-2")
    await dispatcher.drain()
    assert len(drawn) == 1
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert len(bodies) == 2
    assert all(b["attachments"][0]["filename"] == "trend.png" and "attach" not in b for b in bodies)
    await channel.close()
    await other.close()


def test_the_alerts_command_lists_open_alerts_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from healthhut.collector.cli import main

    config = tmp_path / "collector.toml"
    config.write_text(f'[storage]\ntype = "influxdb1"\n[dead_letters]\npath = "{tmp_path / "dead.sqlite"}"\n')
    store = SqliteAlertStore(tmp_path / "alerts.sqlite")  # the default place: beside the dead letters
    item = enqueue(store)
    store.failed(item, "HTTP 410 Gone", None, time.time())
    store.close()
    assert main(["alerts", "--config", str(config), "--dead"]) == 0
    out = capsys.readouterr().out
    assert "1 dead-lettered notification(s)" in out and "HTTP 410 Gone" in out and "via webhook" in out
    assert main(["alerts", "--config", str(config)]) == 0
    assert "0 open alert(s)" in capsys.readouterr().out
