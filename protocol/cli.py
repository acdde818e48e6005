"""Conventions the three programs share on the command line: logging setup and exit codes."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for journald and log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Only entry points call this; library code just uses ``logging.getLogger(__name__)``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # paho logs every packet at DEBUG through aiomqtt's logger; keep it out of INFO-level runs.
    logging.getLogger("mqtt").setLevel(max(logging.WARNING, root.level))


def add_logging_arguments(parser: Any) -> None:
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="json for journald")
