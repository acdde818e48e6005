"""What aiomqtt leaves out and the uplink needs: the broker's verdict on each published message.

aiomqtt's ``publish()`` returns on PUBACK whatever its reason code says, so a message the broker
refused (not authorised by the ACL, too large) would look delivered. :class:`PubackWatch` listens to
paho's callback underneath and records the reason code of the most recent PUBACK.
"""

from __future__ import annotations

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
    """Records PUBACK reason codes of one client. The uplink publishes one message at a time, so the
    refusal recorded while a ``publish()`` was awaited belongs to that message."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._refusal: ReasonCode | None = None
        paho = client._client
        forward: Callable[..., None] | None = paho.on_publish

        def on_publish(paho_client: Any, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
            if reason.is_failure:
                self._refusal = reason
            if forward is not None:
                forward(paho_client, userdata, mid, reason, properties)

        paho.on_publish = on_publish

    async def publish(self, client: aiomqtt.Client, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1; PublishRefusedError if the broker's PUBACK says no."""
        self._refusal = None
        await client.publish(topic, payload, qos=1, retain=retain)
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            raise PublishRefusedError(topic, str(refusal), int(refusal.value))
