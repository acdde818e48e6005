"""Manual MQTT acknowledgement, which aiomqtt does not expose: PUBACK only once a message is stored.

paho (underneath aiomqtt) has the switch; these two functions are the only places that reach it.
"""

from __future__ import annotations

import aiomqtt


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Must be called before connecting: from then on nothing is acknowledged until :func:`acknowledge`."""
    client._client.manual_ack_set(True)


def acknowledge(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    # MQTT requires PUBACKs in the order the messages arrived; the ingest loop handles them in order.
    client._client.ack(message.mid, message.qos)
