"""What aiomqtt leaves out and the uplink needs: the broker's verdict on each published message.

aiomqtt's ``publish()`` returns on PUBACK whatever its reason code says, so a message the broker
refused (not authorised by the ACL, too large) would look delivered. :class:`PubackWatch` listens to
paho underneath: it notes which message id each publishing task was given, and the reason code that
came back for it, so that several messages can be in flight at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode


class PublishRefusedError(Exception):
    """The broker answered a publish with a failure reason code; the message was not accepted."""

    def __init__(self, topic: str, reason: str, code: int) -> None:
        self.topic = topic
        self.reason = reason
        self.code = code
        super().__init__(f"broker refused a message on {topic}: {reason} (0x{code:02x})")


class PubackWatch:
    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._mid_of_task: dict[asyncio.Task[Any], int] = {}
        self._refused: dict[int, ReasonCode] = {}
        paho = client._client
        forward_publish = paho.publish
        forward_puback: Callable[..., None] | None = paho.on_publish

        def publish(*args: Any, **kwargs: Any) -> Any:
            info = forward_publish(*args, **kwargs)
            task = asyncio.current_task()
            if task is not None:
                self._mid_of_task[task] = info.mid
            return info

        def on_publish(paho_client: Any, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
            if reason.is_failure:
                self._refused[mid] = reason
            if forward_puback is not None:
                forward_puback(paho_client, userdata, mid, reason, properties)

        paho.publish = publish  # type: ignore[method-assign]
        paho.on_publish = on_publish

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 and wait for the PUBACK; PublishRefusedError if it says no."""
        task = asyncio.current_task()
        try:
            await self._client.publish(topic, payload, qos=1, retain=retain)
        finally:
            mid = self._mid_of_task.pop(task, None) if task is not None else None
        refusal = self._refused.pop(mid, None) if mid is not None else None
        if refusal is not None:
            raise PublishRefusedError(topic, str(refusal), int(refusal.value))
