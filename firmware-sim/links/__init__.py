"""Links carry a simulated device's bytes or values to the gateway: a pseudo-terminal, a real serial port,
BLE (a fake BlueZ on a private D-Bus, or bumble with an HCI dongle) and MQTT as a whole hut."""

from healthhut.firmware_sim.links.pty import PtyLink
from healthhut.firmware_sim.links.serialport import SerialPortLink

__all__ = ["PtyLink", "SerialPortLink"]
