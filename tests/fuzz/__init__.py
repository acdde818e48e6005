"""Property-based tests (hypothesis) of what comes from outside: hut messages and config files."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# scripts/test --slow (HEALTHHUT_SLOW=1) runs fifty times as many examples.
SCALE = 50 if os.environ.get("HEALTHHUT_SLOW") == "1" else 1


def fuzz(examples: int) -> settings:
    """Settings for ``examples`` inputs (times SCALE). A failure prints its example and a blob for
    ``@reproduce_failure``; the .hypothesis database replays it first on the next run."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
