"""Retry, backoff and timeout numbers of the BLE transport, kept apart from its I/O so they can be tuned."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BlePolicy:
    """How hard the BLE transport tries, and how long it waits. Times are in seconds."""

    # Attempts bleak-retry-connector makes for one advertisement before the link backs off.
    connect_attempts: int = 3
    # Backoff after a failed connect or setup, or a link that dropped soon after it came up.
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 60.0
    # A link that lasted this long was healthy: its loss starts the next backoff from the minimum.
    stable_link_s: float = 10.0
    # Reads, the clock write and the subscriptions after a connect, together.
    setup_timeout_s: float = 30.0
    # An RACP transfer fails when neither a record nor the response arrives for this long.
    racp_idle_timeout_s: float = 10.0
    disconnect_timeout_s: float = 5.0
    # Backoff of the scanner when the adapter is missing, powered off or failing.
    adapter_retry_min_s: float = 1.0
    adapter_retry_max_s: float = 30.0


DEFAULT_POLICY = BlePolicy()
