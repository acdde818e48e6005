"""Property-based tests (hypothesis) of what comes from outside: hut messages and config files."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# scripts/test --slow (HEALTHHUT_SLOW=1) runs fifty times as many examples, freshly random each run. The quick
# run (the one CI makes) draws the same examples every time, so that whether a change lands does not depend on
# the draw; new inputs are found by --slow runs, and each one found is kept as an @example.
SLOW = os.environ.get("HEALTHHUT_SLOW") == "1"
SCALE = 50 if SLOW else 1


def fuzz(examples: int) -> settings:
    """Settings for ``examples`` inputs (times SCALE). A failure prints its example and a blob for
    ``@reproduce_failure``; the .hypothesis database replays it first on the next run."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        print_blob=True,
        derandomize=not SLOW,
        suppress_health_check=[HealthCheck.too_slow],
    )
