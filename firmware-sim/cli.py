"""``hut-sim``: play a hut's devices for technicians and tests."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
from pathlib import Path

from healthhut.firmware_sim.links import PtyLink
from healthhut.firmware_sim.players import PLAYERS, CommandSink, Player
from healthhut.protocol.cli import EXIT_OK

EXAMPLES = """\
examples:
  hut-sim list
  hut-sim play contec-cms50                       # prints the pty path to give the gateway
  hut-sim play contec-cms50 --link /tmp/oximeter  # a stable symlink to the pty, like /dev/serial/by-id
  hut-sim play contec-cms50 --link /tmp/oximeter --spo2 91 --pulse-rate 110 --duration 120
  hut-sim play contec-cms50 --link /tmp/oximeter --unplug-every 30 --unplug-for 5 --garbage 0.01
  hut-sim play contec-cms50 --protocol 9-byte --link /tmp/oximeter  # firmware 4.6+: waits for the gateway
  hut-sim play healthypi --link /tmp/healthypi --pulse-rate 64 --spo2 95
"""

CHUNKS_PER_SECOND = 10


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="hut-sim",
        description="Health hut device simulator: plays the hut's instruments over a pseudo-terminal.",
        epilog=EXAMPLES,
        formatter_class=fmt,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="list the devices hut-sim can play")
    play = commands.add_parser("play", help="play one device", epilog=EXAMPLES, formatter_class=fmt)
    play.add_argument("driver", choices=sorted(PLAYERS), help="which device to play")
    play.add_argument("--link", type=Path, help="also create this symlink to the pty (replaced atomically)")
    play.add_argument("--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)")
    play.add_argument("--spo2", type=int, default=97, help="SpO2 in %% (default 97)")
    play.add_argument("--pulse-rate", type=int, default=72, help="pulse (heart) rate in /min (default 72)")
    play.add_argument(
        "--protocol", help="protocol generation, as the driver's protocol setting (contec-cms50: 5-byte, 9-byte)"
    )
    play.add_argument("--seed", type=int, help="random seed, for a repeatable stream")
    play.add_argument("--unplug-every", type=float, metavar="S", help="fault: unplug the device every S seconds")
    play.add_argument("--unplug-for", type=float, default=2.0, metavar="S", help="fault: stay unplugged S seconds")
    play.add_argument(
        "--garbage", type=float, default=0.0, metavar="P", help="fault: corrupt each chunk with probability P"
    )
    play.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    return parser


async def play(player: Player, args: argparse.Namespace) -> None:
    source = player.new_source(args.spo2, args.pulse_rate, args.seed)
    # A device with a start command hears the gateway through the same pty.
    sink = source if isinstance(source, CommandSink) else None
    rng = random.Random(args.seed)
    link = PtyLink(args.link)
    path = link.open()
    print(path, flush=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    frames_sent = 0
    next_progress = started + 5
    next_unplug = started + args.unplug_every if args.unplug_every else None
    try:
        while args.duration is None or loop.time() - started < args.duration:
            if sink is not None:
                sink.receive(link.read())
            # Pace by the clock, not by sleeps, so the long-run frame rate is exact.
            due = int((loop.time() - started) * player.frames_per_second)
            if due > frames_sent:
                chunk = source.frames(due - frames_sent)
                frames_sent = due
                if args.garbage and rng.random() < args.garbage:
                    chunk = rng.randbytes(rng.randint(1, 16)) + chunk[rng.randint(0, len(chunk)) :]
                link.write(chunk)
            now = loop.time()
            if next_unplug is not None and now >= next_unplug:
                link.close()
                if not args.quiet:
                    print(f"[hut-sim] unplugged for {args.unplug_for:.1f} s", file=sys.stderr, flush=True)
                await asyncio.sleep(args.unplug_for)
                path = link.open()
                next_unplug = loop.time() + args.unplug_every
                if not args.quiet:
                    print(f"[hut-sim] plugged in again at {path}", file=sys.stderr, flush=True)
            if not args.quiet and now >= next_progress:
                next_progress += 5
                print(
                    f"[hut-sim] {now - started:6.0f} s  {frames_sent} frames  "
                    f"{link.bytes_written} bytes delivered  {link.bytes_dropped} dropped (nobody reading)",
                    file=sys.stderr,
                    flush=True,
                )
            await asyncio.sleep(1 / CHUNKS_PER_SECOND)
    finally:
        link.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, player in sorted(PLAYERS.items()):
            print(f"{name:<16} {player.description}")
            for protocol, sibling in player.protocols.items():
                print(f"{'':<16}   --protocol {protocol}: {sibling.description}")
        return EXIT_OK
    try:
        player = PLAYERS[args.driver].for_protocol(args.protocol)
    except KeyError as exc:
        parser.error(exc.args[0])
    # Ctrl-C is how a technician ends an open-ended run; it is not an error.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(play(player, args))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
