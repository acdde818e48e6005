"""The protocol's one error base, with what went wrong and where."""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message that does not follow the wire contract.

    ``reason`` is a short machine-readable code (it names the dead-letter bucket), ``location`` is the
    path to the offending field (``observations[2].values.spo2.value``) or ``None`` for the whole message.
    """

    def __init__(self, reason: str, detail: str, location: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.location = location
        where = f" at {location}" if location else ""
        super().__init__(f"{reason}{where}: {detail}")
