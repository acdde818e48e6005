"""The gateway's durable spool: readings are accepted only once on disk, and leave only once delivered.

An interface with transactions (Telegraf's output buffer is the model): ``put`` returns when the items
are durable; ``lease`` hands out the oldest items; the uplink then ``ack``s them after the broker's
PUBACK or ``release``s them to be sent again. Bounded by a quota: when full, it evicts by clinical
priority (waveforms first, spot vitals last) and records every eviction as a gap.
"""

from healthhut.gateway.spool.base import (
    Gap,
    Lease,
    Priority,
    Spool,
    SpoolError,
    SpoolFullError,
    SpoolItem,
)
from healthhut.gateway.spool.memory import MemorySpool
from healthhut.gateway.spool.sqlite import SqliteSpool, open_spool

__all__ = [
    "Gap",
    "Lease",
    "MemorySpool",
    "Priority",
    "Spool",
    "SpoolError",
    "SpoolFullError",
    "SpoolItem",
    "SqliteSpool",
    "open_spool",
]
