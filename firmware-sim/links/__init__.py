"""Links carry a simulated device's bytes to the gateway: a pseudo-terminal now; serial, BLE, MQTT later."""

from healthhut.firmware_sim.links.pty import PtyLink

__all__ = ["PtyLink"]
