"""Delivery from the outbox: each notification through its channel, retried with backoff, then dead-lettered.

The lifecycle writes notifications to the store's outbox in the same transaction as the state change
that caused them, so a collector that dies between the two loses nothing: the outbox survives it. A
dispatcher leases due items (another process sharing the store does not take them while the lease
runs), renders their pictures once per alert event, and sends. A failed attempt is tried again after
``min(backoff_max_s, 2**attempts)`` seconds with jitter, or at the receiver's Retry-After; a permanent
failure, or the last of ``max_attempts``, is dead-lettered (kept with its error; ``hut-collector alerts
--dead``) and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from healthhut.collector.alerting.notification import Attachment, Channel, DeliveryFailed, Notification
from healthhut.collector.alerting.store import AlertStore, OutboxItem

log = logging.getLogger(__name__)

Renderer = Callable[[Mapping[str, Any]], Awaitable[tuple[Attachment, ...]]]


async def no_pictures(_: Mapping[str, Any]) -> tuple[Attachment, ...]:
    return ()


class Dispatcher:
    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        render: Renderer = no_pictures,
        *,
        max_attempts: int = 10,
        backoff_max_s: float = 600.0,
        lease_s: float = 120.0,
        batch: int = 32,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.render = render
        self.max_attempts = max_attempts
        self.backoff_max_s = backoff_max_s
        self.lease_s = lease_s
        self.batch = batch
        self.sent = 0
        self.retried = 0
        self.dead = 0
        self._wake = asyncio.Event()
        self._pictures: OrderedDict[str, asyncio.Task[tuple[Attachment, ...]]] = OrderedDict()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            items = await asyncio.to_thread(self.store.claim, time.time(), self.lease_s, self.batch)
            if items:
                await asyncio.gather(*(self._deliver(item) for item in items))
                continue
            due = await asyncio.to_thread(self.store.next_due)
            wait = 60.0 if due is None else min(60.0, max(0.0, due - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def drain(self) -> None:
        """Deliver everything due now, once (tests and shutdown)."""
        while items := await asyncio.to_thread(self.store.claim, time.time(), self.lease_s, self.batch):
            await asyncio.gather(*(self._deliver(item) for item in items))

    async def _deliver(self, item: OutboxItem) -> None:
        channel = self.channels.get(item.channel)
        now = time.time()
        if channel is None:
            await self._failed(item, DeliveryFailed(f"no channel {item.channel!r} is configured", permanent=True))
            return
        document = dict(item.document)
        attach = document.pop("attach", None)
        attachments: tuple[Attachment, ...] = ()
        if attach:
            attachments = await self._picture(item, attach)
        try:
            await channel.send(Notification(document, attachments, item.recipients))
        except DeliveryFailed as failure:
            await self._failed(item, failure)
            return
        self.sent += 1
        await asyncio.to_thread(self.store.delivered, item.id, now)

    async def _picture(self, item: OutboxItem, attach: Mapping[str, Any]) -> tuple[Attachment, ...]:
        """Pictures are drawn once per alert event and shared by its channels; one that cannot be drawn
        is left out rather than holding the alert back."""
        key = f"{item.alert_id}/{item.event}/{json.dumps(attach, sort_keys=True)}"
        task = self._pictures.get(key)
        if task is None:
            task = asyncio.ensure_future(self.render(attach))
            self._pictures[key] = task
            while len(self._pictures) > 64:
                self._pictures.popitem(last=False)
        try:
            return await asyncio.shield(task)
        except Exception:
            log.exception("alert %s: its picture could not be drawn; sending it without", item.alert_id)
            return ()

    async def _failed(self, item: OutboxItem, failure: DeliveryFailed) -> None:
        attempts = item.attempts + 1
        now = time.time()
        if failure.permanent or attempts >= self.max_attempts:
            self.dead += 1
            log.error(
                "alert %s (%s) dead-lettered on channel %s after %d attempt(s): %s",
                item.alert_id,
                item.event,
                item.channel,
                attempts,
                failure,
            )
            await asyncio.to_thread(self.store.failed, item.id, str(failure), None, now)
            return
        self.retried += 1
        delay = min(self.backoff_max_s, 2.0**attempts) * random.uniform(0.8, 1.2)
        if failure.retry_after is not None:
            delay = max(delay, failure.retry_after)
        log.warning(
            "alert %s (%s) on channel %s: attempt %d failed (%s); next in %.0f s",
            item.alert_id,
            item.event,
            item.channel,
            attempts,
            failure,
            delay,
        )
        await asyncio.to_thread(self.store.failed, item.id, str(failure), now + delay, now)
