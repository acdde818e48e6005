"""``hut-collector``: run the ingest service, check its config, list dead letters, alerts and sequence events."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from healthhut.collector import ca
from healthhut.protocol.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    add_logging_arguments,
    configure_logging,
    print_config_error,
)
from healthhut.protocol.configfile import ConfigError

EXIT_EXPORT = 3  # the database could not be read

EXAMPLES = """\
examples:
  hut-collector run --config /etc/healthhut/collector.toml
  hut-collector check-config collector.toml
  hut-collector dead-letters --config collector.toml --limit 20
  hut-collector dead-letters --config collector.toml --hut hut-0001 --payload
  hut-collector sequence --config collector.toml --hut hut-0001
  hut-collector alerts --config collector.toml              # open alerts
  hut-collector alerts --config collector.toml --dead       # notifications that could not be delivered
  hut-collector pseudonym --key /etc/healthhut/pseudonym.key --lookup 3f2a...e9 --roster clinic-ids.txt
  hut-collector pseudonym --key new-pseudonym.key --new      # a new deployment key (never overwrites)
  hut-collector roster --config collector.toml --hut hut-0001 --file hut-0001.csv --check
  hut-collector roster --config collector.toml --hut hut-0001 --file hut-0001.csv \\
      --key /etc/healthhut/pseudonym.key        # a register with resident_id instead of pseudonym
  hut-collector roster --config collector.toml --hut hut-0001 --clear
  hut-collector export-fhir --config collector.toml --subject 3f2a...e9 \\
      --from 2026-11-01 --to 2026-12-01 --output resident.json
  hut-collector ca sign --csr hut-0001.csr --out hut-0001.pem   # see: hut-collector ca --help

The example config, with every key explained, is collector/collector.example.toml.
"""


def _timestamp(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="hut-collector",
        description="Health hut collector: validates what huts send over MQTT and writes it to InfluxDB.",
        epilog=EXAMPLES,
        formatter_class=fmt,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the collector service", epilog=EXAMPLES, formatter_class=fmt)
    run.add_argument("--config", "-c", type=Path, required=True, help="collector TOML config")
    add_logging_arguments(run)
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config", type=Path)
    dead = commands.add_parser("dead-letters", help="list refused messages, newest first")
    dead.add_argument("--config", "-c", type=Path, required=True)
    dead.add_argument("--limit", type=int, default=50)
    dead.add_argument("--hut", help="only this hut")
    dead.add_argument("--payload", action="store_true", help="also print the stored raw bytes")
    sequence = commands.add_parser(
        "sequence", help="list gaps, duplicates and restarts in the huts' message numbers, newest first"
    )
    sequence.add_argument("--config", "-c", type=Path, required=True)
    sequence.add_argument("--limit", type=int, default=50)
    sequence.add_argument("--hut", help="only this hut")
    alerts = commands.add_parser(
        "alerts", help="list open alerts, or with --dead the notifications that could not be delivered"
    )
    alerts.add_argument("--config", "-c", type=Path, required=True)
    alerts.add_argument("--limit", type=int, default=50)
    alerts.add_argument("--all", action="store_true", help="closed alerts too")
    alerts.add_argument("--dead", action="store_true", help="dead-lettered notifications, with their last error")
    pseudo = commands.add_parser(
        "pseudonym",
        help="for a clinic system holding the deployment key: a resident's pseudonym, or whose a pseudonym is",
        description=(
            "Pseudonyms are HMAC-SHA256 of the resident identifier under the deployment key, so they cannot be "
            "reversed: --lookup finds the identifier in a roster (one identifier per line) whose pseudonym it is."
        ),
        epilog=EXAMPLES,
        formatter_class=fmt,
    )
    pseudo.add_argument("--key", type=Path, required=True, help="the deployment's pseudonym key file (mode 0600)")
    way = pseudo.add_mutually_exclusive_group(required=True)
    way.add_argument("--resident", help="print this identifier's pseudonym")
    way.add_argument("--lookup", metavar="PSEUDONYM", help="find this pseudonym's identifier in --roster")
    way.add_argument(
        "--new", action="store_true", help="write a new random key to --key (mode 0600); an existing file is kept"
    )
    pseudo.add_argument("--roster", type=Path, help="file of identifiers, one per line (with --lookup)")
    roster = commands.add_parser(
        "roster",
        help="publish a hut's roster of residents' profiles (retained), from a clinic's CSV register",
        description=(
            "Reads a CSV register (columns pseudonym or resident_id, birth_date or age_band, sex, clinical; "
            "see collector/roster.py), checks every line, and publishes it retained to the hut, which then "
            "knows its residents' profiles by card and refuses cards not on it. No name is ever sent."
        ),
        epilog=EXAMPLES,
        formatter_class=fmt,
    )
    roster.add_argument("--config", "-c", type=Path, required=True)
    roster.add_argument("--hut", required=True, help="the hut's id")
    what = roster.add_mutually_exclusive_group(required=True)
    what.add_argument("--file", type=Path, help="the CSV register of the hut's residents")
    what.add_argument("--clear", action="store_true", help="remove the hut's roster (cards are then not checked)")
    roster.add_argument("--key", type=Path, help="the pseudonym key, if the register has resident_id")
    roster.add_argument("--check", action="store_true", help="check the file only; publish nothing")
    fhir = commands.add_parser(
        "export-fhir",
        help="write one subject's observations in a time range as a FHIR R4 Bundle (HL7 PHD IG coding)",
        epilog=EXAMPLES,
        formatter_class=fmt,
    )
    fhir.add_argument("--config", "-c", type=Path, required=True)
    fhir.add_argument("--subject", required=True, help="the resident's pseudonym (64 hex digits)")
    fhir.add_argument("--from", dest="start", type=_timestamp, required=True, help="ISO date or time, inclusive")
    fhir.add_argument("--to", dest="end", type=_timestamp, required=True, help="ISO date or time, exclusive")
    fhir.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    ca.add_parser(commands)
    return parser


def tune_garbage_collector() -> None:
    """For a long-running ingest loop: what was loaded at startup (modules, schemas, the config: the
    bulk of the heap) is frozen out of the collector's full passes, and the youngest generation is
    collected every 10,000 allocations instead of 700. A message's objects live for one window, a few
    hundred milliseconds; at 700 they outlived two collections, were promoted to the oldest generation
    and set off a full pass every half second, each scanning the whole heap: 1.2 of 4.2 seconds of the
    collector benchmark went to collection, and 0.3 after this."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


async def _run(config_path: Path) -> None:
    from healthhut.collector.alerting.service import AlertService
    from healthhut.collector.config import load_config
    from healthhut.collector.deadletters import DeadLetterStore
    from healthhut.collector.ingest import Ingest
    from healthhut.collector.storage import Influx1Writer, make_writer
    from healthhut.protocol.sdnotify import Notifier, keep_notifying

    config = load_config(config_path)
    # Before anything that needs closing: a secret file that cannot be read is a config error.
    try:
        alerts = AlertService(config) if config.alerting.enabled else None
    except (ValueError, OSError) as exc:
        raise ConfigError(config_path, "alerting", str(exc)) from exc
    writer = make_writer(config.storage)
    if isinstance(writer, Influx1Writer):
        await writer.ensure_database()
    store = DeadLetterStore(config.dead_letters.path, config.dead_letters.max_payload_bytes)
    ingest = Ingest(config, writer, store, alerts=alerts)
    tune_garbage_collector()
    if alerts is not None:
        alerts.health = ingest.health
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(ingest.run(), name="ingest")
            alerting = group.create_task(alerts.run(), name="alerting") if alerts is not None else None
            notifier = Notifier.from_environment()
            notify_task = group.create_task(
                keep_notifying(
                    notifier,
                    problem=lambda: (
                        "the ingest loop has stopped"
                        if task.done()
                        else "alerting has stopped"
                        if alerting is not None and alerting.done()
                        else None
                    ),
                    status=lambda: (
                        f"{'subscribed' if ingest.subscribed.is_set() else 'waiting for the broker'}, "
                        f"{ingest.stats.messages} message(s) stored, {ingest.stats.dead_letters} dead letter(s)"
                    ),
                    ready=ingest.subscribed,
                ),
                name="systemd-notify",
            )
            await stop.wait()
            notify_task.cancel()
            notifier.stopping()
            for running in (task, alerting):
                if running is not None:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
    finally:
        if alerts is not None:
            await alerts.close()
        await writer.close()
        store.close()
        ingest.ledger.close()


def _list_dead_letters(args: argparse.Namespace) -> int:
    from healthhut.collector.config import load_config
    from healthhut.collector.deadletters import DeadLetterStore

    config = load_config(args.config)
    store = DeadLetterStore(config.dead_letters.path, config.dead_letters.max_payload_bytes)
    letters = store.list(limit=args.limit, hut_id=args.hut)
    print(f"{store.count()} dead letter(s) in {config.dead_letters.path}; showing {len(letters)}")
    for letter in letters:
        where = f" at {letter.location}" if letter.location else ""
        print(
            f"#{letter.id} {letter.received_at:%Y-%m-%d %H:%M:%S} {letter.topic} [{letter.hut_id or '?'}] "
            f"{letter.reason}{where}: {letter.detail} ({letter.size} bytes)"
        )
        if args.payload:
            print("    " + letter.payload[:512].decode("utf-8", errors="replace"))
    store.close()
    return EXIT_OK


def _list_sequence_events(args: argparse.Namespace) -> int:
    from healthhut.collector.config import load_config
    from healthhut.collector.sequence import SequenceLedger

    config = load_config(args.config)
    ledger = SequenceLedger(config.sequence_path, config.sequence.grace_s)
    events = ledger.events(hut_id=args.hut, limit=args.limit)
    print(f"{len(events)} sequence event(s) in {config.sequence_path}")
    for event in events:
        span = f"{event.first}" if event.first == event.last else f"{event.first}-{event.last}"
        print(f"{event.at:%Y-%m-%d %H:%M:%S} {event.hut_id} {event.event}: message(s) {span} ({event.count})")
    ledger.close()
    return EXIT_OK


def _list_alerts(args: argparse.Namespace) -> int:
    from healthhut.collector.alerting.store import SqliteAlertStore
    from healthhut.collector.config import load_config

    config = load_config(args.config)
    store = SqliteAlertStore(config.alerting_path)
    try:
        if args.dead:
            items = store.outbox("dead", limit=args.limit)
            print(f"{len(items)} dead-lettered notification(s) in {config.alerting_path}")
            for item in items:
                at = datetime.fromtimestamp(item.created_at, UTC)
                print(
                    f"#{item.id} {at:%Y-%m-%d %H:%M:%S} alert {item.alert_id} {item.event} via {item.channel} "
                    f"after {item.attempts} attempt(s): {store.last_error(item.id)}"
                )
            return EXIT_OK
        episodes = store.episodes(open_only=not args.all, limit=args.limit)
        print(f"{len(episodes)} {'' if args.all else 'open '}alert(s) in {config.alerting_path}")
        for episode in episodes:
            at = datetime.fromtimestamp(episode.opened_at, UTC)
            acked = f", acknowledged by {episode.acked_by}" if episode.acked_by else ""
            print(
                f"{at:%Y-%m-%d %H:%M:%S} {episode.alert_id} {episode.hut_id} {episode.rule} {episode.severity} "
                f"{episode.audience} {episode.state}{acked}"
            )
        return EXIT_OK
    finally:
        store.close()


def _export_fhir(args: argparse.Namespace) -> int:
    from healthhut.collector.config import load_config
    from healthhut.collector.fhir import ExportError, bundle, read_observations

    config = load_config(args.config)
    try:
        observations = read_observations(config.storage, args.subject, args.start, args.end)
    except ExportError as exc:
        print(f"hut-collector: {exc}", file=sys.stderr)
        return EXIT_EXPORT
    text = json.dumps(bundle(observations, args.subject), ensure_ascii=False, indent=1)
    if args.output is None:
        print(text)
    else:
        args.output.write_text(text + "\n")
        print(f"{len(observations)} observation(s) written to {args.output}", file=sys.stderr)
    return EXIT_OK


def _pseudonym(args: argparse.Namespace) -> int:
    from healthhut.protocol.pseudonym import PseudonymKey, PseudonymKeyError, generate_key_file

    if args.new:
        try:
            generate_key_file(args.key)
        except FileExistsError:
            print(
                f"hut-collector: {args.key} exists; a new key never replaces one (see Rotating the key)",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        except OSError as exc:
            print(f"hut-collector: {args.key}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"hut-collector: wrote a new pseudonym key to {args.key} (mode 0600)", file=sys.stderr)
        return EXIT_OK
    try:
        key = PseudonymKey.load(args.key)
    except PseudonymKeyError as exc:
        print(f"hut-collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.resident is not None:
        try:
            print(key.pseudonym(args.resident))
        except ValueError as exc:
            print(f"hut-collector: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        return EXIT_OK
    if args.roster is None:
        print("hut-collector: --lookup needs --roster", file=sys.stderr)
        return EXIT_FAILURE
    try:
        lines = args.roster.read_text().splitlines()
    except OSError as exc:
        print(f"hut-collector: {args.roster}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    found = key.match(args.lookup.strip().lower(), lines)
    if found is None:
        print(f"hut-collector: no identifier in {args.roster} has that pseudonym", file=sys.stderr)
        return EXIT_FAILURE
    print(found)
    return EXIT_OK


def _roster(args: argparse.Namespace) -> int:
    import aiomqtt

    from healthhut.collector.config import load_config
    from healthhut.collector.roster import RosterFileError, publish_roster, read_roster
    from healthhut.protocol.pseudonym import PseudonymKey, PseudonymKeyError
    from healthhut.protocol.topics import check_hut_id

    try:
        check_hut_id(args.hut)
        key = PseudonymKey.load(args.key) if args.key is not None else None
        roster = read_roster(args.file, args.hut, key) if args.file is not None else None
    except (ValueError, PseudonymKeyError, RosterFileError) as exc:
        print(f"hut-collector: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    count = len(roster.entries) if roster is not None else 0
    if args.check:
        print(f"{args.file}: {count} resident(s), OK")
        return EXIT_OK
    mqtt = load_config(args.config).mqtt
    try:
        asyncio.run(publish_roster(mqtt, mqtt.client_id, args.hut, roster))
    except aiomqtt.MqttError as exc:
        print(f"hut-collector: could not publish to {mqtt.host}:{mqtt.port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"hut {args.hut}: " + (f"roster of {count} resident(s) published" if roster else "roster cleared"))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pseudonym":  # needs the key, not the collector's config
        return _pseudonym(args)
    if args.command == "ca":  # needs the CA's folder, not the collector's config
        return ca.run(args)
    from healthhut.collector.config import load_config

    try:
        config_path: Path = args.config
        load_config(config_path)
        if args.command == "check-config":
            print(f"{config_path}: OK")
            return EXIT_OK
        if args.command == "dead-letters":
            return _list_dead_letters(args)
        if args.command == "sequence":
            return _list_sequence_events(args)
        if args.command == "export-fhir":
            return _export_fhir(args)
        if args.command == "alerts":
            return _list_alerts(args)
        if args.command == "roster":
            return _roster(args)
    except ConfigError as exc:
        print_config_error("hut-collector", exc)
        return EXIT_CONFIG
    configure_logging(args.log_level, args.log_format)
    try:
        asyncio.run(_run(config_path))
    except ConfigError as exc:
        print_config_error("hut-collector", exc)
        return EXIT_CONFIG
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
