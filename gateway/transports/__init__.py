"""Transports own all device I/O (serial, BLE, input devices): opening, reading, and telling an unplug apart."""

from healthhut.gateway.transports.base import ByteStream, TransportError
from healthhut.gateway.transports.ble import (
    BleCentral,
    BleConnected,
    BleConnectFailed,
    BleDeviceLink,
    BleDisconnected,
    BleError,
    BleEvent,
    BleTarget,
    BleValue,
    RacpResult,
)
from healthhut.gateway.transports.ble_policy import BlePolicy
from healthhut.gateway.transports.ble_session import run_ble_device
from healthhut.gateway.transports.evdev import open_evdev
from healthhut.gateway.transports.serial import open_serial

__all__ = [
    "BleCentral",
    "BleConnectFailed",
    "BleConnected",
    "BleDeviceLink",
    "BleDisconnected",
    "BleError",
    "BleEvent",
    "BlePolicy",
    "BleTarget",
    "BleValue",
    "ByteStream",
    "RacpResult",
    "TransportError",
    "open_evdev",
    "open_serial",
    "run_ble_device",
]
