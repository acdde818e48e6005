"""The protocol's one error base, with what went wrong and where."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


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


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_SHOWN_NAME = 64
_TAGGED = ("union_tag_not_found", "union_tag_invalid")


def field_path(error: ErrorDetails, document: object) -> tuple[int | str, ...]:
    """Where a pydantic validation error lies in ``document``, the data as it was given.

    pydantic's ``loc`` also names the member of a union it tried (``value.float``) and the tag of a
    discriminated union (``storage.influxdb1``). Neither is a key of the document, so both are left
    out, while a missing key stays; a missing or unknown tag is the discriminator key's own error.
    """
    loc = list(error["loc"])
    if error["type"] in _TAGGED and (found := re.fullmatch(r"'(\w+)'", str(error.get("ctx", {}).get("discriminator")))):
        loc.append(found.group(1))
    path: list[int | str] = []
    node = document
    for index, part in enumerate(loc):
        if isinstance(node, dict):
            present = part in node
        else:
            present = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if present:
            node = node[part]  # type: ignore[index]
        elif isinstance(node, dict) and index == len(loc) - 1 and error["type"] in ("missing", *_TAGGED):
            node = None
        else:
            continue
        path.append(part)
    return tuple(path)


def path_text(path: Sequence[int | str]) -> str:
    """``("devices", 0, "path")`` → ``devices[0].path``; a key that is not a plain name is quoted
    (``values."a.b"``), and a very long one cut short."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part
        if len(part) > _SHOWN_NAME or not _NAME.fullmatch(part):
            shown = part if len(part) <= _SHOWN_NAME else part[:_SHOWN_NAME] + "…"
            # backslashreplace: a lone surrogate (JSON allows "\ud800") must not reach a log or a database.
            name = json.dumps(shown, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
        out += f".{name}" if out else name
    return out
