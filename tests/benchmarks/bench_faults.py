"""Benchmark: the delivery fault tests at a larger scale (issue 5).

A hut with two oximeters streams for the whole run while the gateway is SIGKILLed at random moments,
many times, and the broker is restarted now and then. At the end, what the gateway accepted is compared
with what reached InfluxDB. Summary line:
``spool-faults: cycles=... produced=... stored=... lost=... duplicated=... gaps=...``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from healthhut.devstack import LocalStack
from tests.faults.harness import Hut


async def run(cycles: int, seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="healthhut-faults-") as tmp:
        root = Path(tmp)
        with LocalStack(root / "servers", victoria=False) as stack:
            hut = Hut(root, stack, "hut-bench-faults")
            try:
                await hut.start()
                started = time.monotonic()
                for cycle in range(1, cycles + 1):
                    await asyncio.sleep(rng.uniform(0.2, 1.5))
                    hut.kill_gateway()
                    if cycle % 25 == 0:
                        stack.mosquitto.stop()  # and now and then the broker goes too
                        stack.mosquitto.start()
                    await hut.start_gateway()
                    if cycle % 10 == 0:
                        print(
                            f"  {cycle}/{cycles} kills, {time.monotonic() - started:.0f} s, "
                            f"{len(hut.ledger.accepted)} accepted so far",
                            file=sys.stderr,
                            flush=True,
                        )
                await asyncio.sleep(2)
                await hut.settle(within=120)
                hut.stop_gateway()
                await hut.settle(within=30)
                accepted, stored, lost, duplicated = hut.verdict()
                gaps = len(hut.stored_gaps())
            finally:
                await hut.close()
    print(f"seed {seed}; {cycles} SIGKILLs of the gateway, a broker restart every 25")
    print(
        f"spool-faults: cycles={cycles} produced={accepted} stored={stored} lost={lost} "
        f"duplicated={duplicated} gaps={gaps}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=random.randrange(2**32))
    args = parser.parse_args()
    asyncio.run(run(args.cycles, args.seed))


if __name__ == "__main__":
    main()
