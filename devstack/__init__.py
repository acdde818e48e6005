"""Real local servers (mosquitto, influxd 1.x, VictoriaMetrics) on loopback for tests and the demo."""

from healthhut.devstack.servers import (
    Influxd1,
    LocalStack,
    Mosquitto,
    ServerError,
    ServerProcess,
    ServerRequestError,
    VictoriaMetrics,
    find_binary,
    free_port,
)

__all__ = [
    "Influxd1",
    "LocalStack",
    "Mosquitto",
    "ServerError",
    "ServerProcess",
    "ServerRequestError",
    "VictoriaMetrics",
    "find_binary",
    "free_port",
]
