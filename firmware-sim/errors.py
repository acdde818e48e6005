"""hut-sim's errors: one base, with what failed and where."""

from __future__ import annotations


class SimError(Exception):
    """Something hut-sim cannot do. ``link`` names the link it concerns (pty, serial, ble, mqtt), if any."""

    def __init__(self, message: str, *, link: str | None = None) -> None:
        self.link = link
        super().__init__(message)


class LinkError(SimError):
    """A link could not be opened, or failed while playing. ``target`` is its path, address or broker."""

    def __init__(self, link: str, target: str, message: str) -> None:
        self.target = target
        super().__init__(f"{link} link {target}: {message}", link=link)
