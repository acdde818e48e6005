"""Transports own all device I/O (serial, BLE): opening, reading, and telling an unplug apart."""

from healthhut.gateway.transports.base import ByteStream, TransportError
from healthhut.gateway.transports.serial import open_serial

__all__ = ["ByteStream", "TransportError", "open_serial"]
