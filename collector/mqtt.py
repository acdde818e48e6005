"""The collector's broker connections, and manual MQTT acknowledgement, which aiomqtt does not expose
(PUBACK only once a message is stored: paho, underneath aiomqtt, has the switch; ``enable_manual_ack``
and ``acknowledge`` are the only places that reach it).
"""

from __future__ import annotations

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from healthhut.collector.config import MqttConfig


def make_client(
    mqtt: MqttConfig, identifier: str, *, will: aiomqtt.Will | None = None, receive_maximum: int | None = None
) -> aiomqtt.Client:
    """An MQTT 5 client with a persistent session (it survives a restart for ``session_expiry_s``)."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = mqtt.session_expiry_s
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    return aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        identifier=identifier,
        will=will,
        username=mqtt.username,
        password=mqtt.password,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=properties,
        keepalive=mqtt.keepalive,
        tls_context=mqtt.tls.ssl_context() if mqtt.tls else None,
        timeout=10,
    )


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Must be called before connecting: from then on nothing is acknowledged until :func:`acknowledge`."""
    client._client.manual_ack_set(True)


def acknowledge(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    # MQTT requires PUBACKs in the order the messages arrived; the ingest loop handles them in order.
    client._client.ack(message.mid, message.qos)
