"""``hut-sim``: play a hut's devices for technicians and tests, over a pty, a serial port, BLE or MQTT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from collections.abc import Awaitable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from healthhut.devstack.servers import ServerError
from healthhut.drivers import DriverNotFoundError
from healthhut.drivers.gatt.decoder import DEFAULT_TIMEZONE
from healthhut.firmware_sim.ble_play import DEFAULT_AWAKE_S, BlePlayer
from healthhut.firmware_sim.catalog import Playable, catalog, playable
from healthhut.firmware_sim.errors import SimError
from healthhut.firmware_sim.faults import FAULTS, LINKS, Fault, check_faults
from healthhut.firmware_sim.gatt_devices import DEFAULT_INTERVAL_S, GATT_DEVICES, GattDevice
from healthhut.firmware_sim.hut import DeviceFeed, GattFeed, HutSimulation, SerialFeed
from healthhut.firmware_sim.identity import DEFAULT_KIOSK, kiosk, present_cards, scan, type_keys
from healthhut.firmware_sim.links import PtyLink, SerialPortLink
from healthhut.firmware_sim.links.ble import add_fake_peripheral, fake_bluez, require_bumble
from healthhut.firmware_sim.links.mqtt import Broker, HutRun, MqttCounters, report_progress, run_hut
from healthhut.firmware_sim.players import PLAYERS
from healthhut.firmware_sim.progress import PROGRESS_EVERY_S, Progress
from healthhut.firmware_sim.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario
from healthhut.firmware_sim.serial_play import ByteLink, SerialPlay, play_serial
from healthhut.firmware_sim.signals import Rhythm
from healthhut.protocol.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from healthhut.protocol.topics import HUT_ID_PATTERN

LIST_EXAMPLES = """\
examples:
  hut-sim list                 # every driver, the links it plays over, and its faults
  hut-sim list scenarios       # the clinical scenarios for --scenario
  hut-sim list faults          # the faults for --fault, and the links they work on
"""

PLAY_EXAMPLES = """\
links (--link): pty (the default for serial devices; prints the pty path), PATH (a pty plus a stable symlink
at PATH, like /dev/serial/by-id), serial (a real port, --port), ble (the default for BLE devices: a fake BlueZ,
or with --transport a real GATT peripheral through bumble on an HCI controller), mqtt (the device alone in a
hut, straight into the broker: see "hut-sim hut").

examples:
  hut-sim play contec-cms50                       # prints the pty path to give the gateway
  hut-sim play contec-cms50 --link /tmp/oximeter  # a stable symlink to the pty, like /dev/serial/by-id
  hut-sim play contec-cms50 --link /tmp/oximeter --scenario hypoxaemia --duration 120
  hut-sim play contec-cms50 --link /tmp/oximeter --unplug-every 30 --unplug-for 5 --garbage 0.01
  hut-sim play contec-cms50 --link /tmp/ox --fault unplug-mid-frame --fault special-values
  hut-sim play contec-cms50 --protocol 9-byte --link /tmp/oximeter  # firmware 4.6+: waits for the gateway
  hut-sim play contec-cms50 --link serial --port /dev/ttyUSB1       # bench test over a USB-serial loopback
  hut-sim play healthypi --link /tmp/healthypi --scenario atrial-fibrillation
  hut-sim play healthypi --link /tmp/healthypi --pulse-rate 64 --pause-every 8
  hut-sim play healthypi --link /tmp/healthypi --fault leads-off   # electrodes off 4 s in every 10
  hut-sim play healthypi --link /tmp/healthypi --fault motion      # a fidgeting resident: motion_artifact
  hut-sim play healthypi --board v5 --link /tmp/healthypi5 --pulse-rate 64 --spo2 95  # HealthyPi 5, 128/s
  hut-sim play ble-blood-pressure --link ble --scenario hypertensive-crisis --interval 20
      # prints DBUS_SYSTEM_BUS_ADDRESS=...: start hut-gateway with that in its environment
  hut-sim play ble-glucose --link ble --dbus-address unix:path=/tmp/bus --fault racp-link-loss
  hut-sim play ble-thermometer --fault clock-reset --scenario fever --steady
  hut-sim play ble-heart-rate --link ble --transport usb:0 --scenario atrial-fibrillation  # a USB dongle
  hut-sim play ble-glucose --transport hci-socket:0 --fault racp-link-loss  # an adapter BlueZ lets go of
  hut-sim play ble-blood-pressure --transport serial:/dev/ttyACM0,1000000  # a Zephyr hci_uart board
  hut-sim play ble-weight-scale --link mqtt --mqtt 127.0.0.1:1883 --hut-id hut-a
"""

HUT_EXAMPLES = """\
hut-sim stands in for a gateway: its devices are decoded by the real drivers and published as numbered
observation and waveform batches (retained birth record, Last Will "offline"). It runs none of the
gateway's checks.

examples:
  hut-sim hut --mqtt 127.0.0.1:1883 --hut-id hut-a --duration 60
  hut-sim hut --mqtt broker:8883 --hut-id hut-a --ca ca.pem --cert hut-a.pem --key hut-a.key
  hut-sim hut --hut-id hut-b --devices contec-cms50:9-byte ble-blood-pressure ble-glucose --scenario fever
  hut-sim hut --hut-id hut-d --devices healthypi:v5 ble-pulse-oximeter --scenario atrial-fibrillation
  hut-sim hut --hut-id hut-c --fault garbage --fault resend-old-records --interval 10
"""

LOAD_EXAMPLES = """\
Each hut is its own MQTT client, sending --rate spot readings a second in batches every --batch-interval,
taken from its devices in turn (device time stamps dropped, so that every reading is a new observation).

examples:
  hut-sim load --huts 50 --rate 2 --duration 300
  hut-sim load --mqtt broker:8883 --huts 200 --rate 1 --ca ca.pem --cert load.pem --key load.key
  hut-sim load --huts 10 --rate 20 --waves --hut-prefix bench
"""

MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


# --- the parser -------------------------------------------------------------------------------------------


def _add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what the devices measure (a scenario, and values that override it)")
    group.add_argument(
        "--scenario",
        default=DEFAULT_SCENARIO,
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"a clinical scenario (default {DEFAULT_SCENARIO}; see 'hut-sim list scenarios')",
    )
    group.add_argument("--spo2", type=int, help="SpO2 in %% (normal-adult: 97)")
    group.add_argument("--pulse-rate", type=int, help="pulse (heart) rate in /min (normal-adult: 72)")
    group.add_argument("--systolic", type=int, help="systolic pressure in mmHg")
    group.add_argument("--diastolic", type=int, help="diastolic pressure in mmHg")
    group.add_argument("--temperature", type=float, help="body temperature in °C")
    group.add_argument("--glucose", type=float, help="blood glucose in mmol/L")
    group.add_argument("--weight", type=float, help="body weight in kg")
    group.add_argument("--respiration-rate", type=int, help="breaths a minute")
    group.add_argument("--rhythm", choices=[r.value for r in Rhythm], help="sinus, or af (atrial fibrillation)")
    group.add_argument("--pause-every", type=int, metavar="N", help="a 3 s sinus pause in place of every N-th beat")
    group.add_argument(
        "--steady", action="store_true", help="BLE devices send the scenario's values exactly, without variation"
    )


def _add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("faults")
    group.add_argument(
        "--fault",
        action="append",
        default=[],
        choices=[f.value for f in Fault],
        metavar="NAME",
        help="inject a fault (repeatable): " + ", ".join(f.value for f in Fault) + " (see 'hut-sim list faults')",
    )


def _add_mqtt_arguments(parser: argparse.ArgumentParser, *, hut_id: bool) -> None:
    group = parser.add_argument_group("MQTT")
    group.add_argument("--mqtt", default="127.0.0.1", metavar="HOST[:PORT]", help="the broker (default 127.0.0.1:1883)")
    if hut_id:
        group.add_argument("--hut-id", help=f"the hut's id ({HUT_ID_PATTERN})")
    group.add_argument("--tls", action="store_true", help="TLS (implied by --ca or --cert; port 8883 by default)")
    group.add_argument("--ca", type=Path, metavar="FILE", help="CA certificate(s) to trust (default: the system's)")
    group.add_argument("--cert", type=Path, metavar="FILE", help="client certificate (PEM) for mutual TLS")
    group.add_argument("--key", type=Path, metavar="FILE", help="client private key (PEM)")
    group.add_argument("--username")
    group.add_argument("--password")
    group.add_argument(
        "--connect-timeout", type=float, default=10.0, metavar="S", help="give up connecting after S s (default 10)"
    )
    group.add_argument(
        "--batch-interval", type=float, default=1.0, metavar="S", help="seconds between batches (default 1)"
    )


def _add_common_arguments(parser: argparse.ArgumentParser, *, default_duration: float | None = None) -> None:
    default = "run until Ctrl-C" if default_duration is None else f"{default_duration:g}"
    parser.add_argument("--duration", type=float, default=default_duration, help=f"seconds to run (default: {default})")
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help=f"no progress lines (every {PROGRESS_EVERY_S:g} s) on stderr"
    )


def _add_device_timing(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("BLE devices")
    group.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help="seconds between spot measurements of the cuff, thermometer, scale, meter and oximeter "
        f"(default {DEFAULT_INTERVAL_S:g})",
    )
    group.add_argument(
        "--timezone", default=DEFAULT_TIMEZONE, help=f"the zone the devices' clocks run in (default {DEFAULT_TIMEZONE})"
    )


IDENTITY_EXAMPLES = """\
examples:
  hut-sim scan --link /tmp/card-scanner --code 11010519491231002X
  hut-sim scan --link /tmp/card-scanner --code 110105194912310039 --code 11010519491231002X --interval 30
  hut-sim scan --card-reader --link /tmp/card-reader --code 62E3086CED          # an RDM6300 and an EM4100 card
  hut-sim scan --card-reader --link /tmp/card-reader --code 62E3086CED --present 5   # left on: still one read
  hut-sim scan --hid /tmp/hid-scanner --code 11010519491231002X      # a keyboard-style scanner's key events
  hut-sim scan --hid /tmp/hid-scanner --code H1234567 --key-delay 0.02 --event-size 16 --terminator TAB
  hut-sim session start --resident 11010520240301004X --birth-date 2024-03-01 --sex female
  hut-sim session start --resident H1234567 --age-band 70-79y --clinical hypercapnic_respiratory_failure
  hut-sim session show
  hut-sim session end
"""


def _add_identity_commands(commands: Any, fmt: type[argparse.HelpFormatter]) -> None:
    scan = commands.add_parser(
        "scan",
        help="be a health-card scanner: type resident codes as a real scanner does (serial, RFID card reader "
        "or keyboard-style)",
        description="Be a resident-card reader for the gateway: a barcode scanner in serial mode on a pty (the "
        "id-scanner driver, the default), an RDM6300 125 kHz card reader on a pty (--card-reader, the card-reader "
        "driver), or a barcode scanner in keyboard mode (--hid, the hid-scanner driver), whose key events are "
        "written to a FIFO as the kernel would deliver them from /dev/input/eventN.",
        epilog=IDENTITY_EXAMPLES,
        formatter_class=fmt,
    )
    kind = scan.add_mutually_exclusive_group()
    kind.add_argument(
        "--card-reader",
        action="store_true",
        help="be an RDM6300 card reader on the pty: each --code is a card's 10 hex digits (version byte and "
        "card number), sent as its frame every 50 ms while the card is presented",
    )
    kind.add_argument(
        "--hid",
        type=Path,
        metavar="PATH",
        help="be a keyboard-style scanner writing input_event records to PATH, a FIFO (made if missing) or a "
        "file: the gateway's hid-scanner path",
    )
    scan.add_argument("--link", type=Path, help="symlink to the pty (the gateway's id-scanner or card-reader path)")
    scan.add_argument("--code", action="append", required=True, help="a code to scan (repeat for several)")
    scan.add_argument(
        "--terminator",
        choices=["CR", "LF", "CRLF", "ETX", "ENTER", "TAB"],
        help="what follows each code: CR (default), LF, CRLF or ETX on a serial line; the ENTER (default) or "
        "TAB key with --hid",
    )
    scan.add_argument("--interval", type=float, default=2.0, help="seconds before and between scans (default 2)")
    scan.add_argument("--hold", type=float, default=2.0, help="seconds to keep the line open after (default 2)")
    scan.add_argument(
        "--present",
        type=float,
        default=0.5,
        metavar="S",
        help="--card-reader: seconds each card stays on the reader (default 0.5)",
    )
    scan.add_argument(
        "--key-delay",
        type=float,
        default=0.004,
        metavar="S",
        help="--hid: seconds between key events (default 0.004, a fast scanner)",
    )
    scan.add_argument(
        "--event-size",
        type=int,
        choices=[16, 24],
        help="--hid: bytes per input_event, 24 on 64-bit and 16 on 32-bit userland (default: this machine's)",
    )
    session = commands.add_parser(
        "session",
        help="start, end or show a resident session through the gateway's kiosk API",
        epilog=IDENTITY_EXAMPLES,
        formatter_class=fmt,
    )
    session.add_argument("action", choices=["start", "end", "show"])
    session.add_argument("--kiosk", default=DEFAULT_KIOSK, help=f"the kiosk API (default {DEFAULT_KIOSK})")
    session.add_argument("--resident", help="the resident's card or ID number (start)")
    when = session.add_mutually_exclusive_group()
    when.add_argument("--birth-date", help="YYYY-MM-DD")
    when.add_argument("--age-band", help='e.g. "7m", "4y", "70-79y", "80+y"')
    session.add_argument("--sex", choices=["female", "male", "unknown"], default="unknown")
    session.add_argument(
        "--clinical",
        action="append",
        default=[],
        choices=["hypercapnic_respiratory_failure", "pregnancy", "diabetes", "hypertension_treated"],
        help="a profile flag that changes the alert rules (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="hut-sim",
        description="Health hut device simulator: plays the hut's instruments over a pty, a serial port, BLE, "
        "or straight into MQTT as whole huts.",
        epilog="Each command has its own --help with examples.\n\n"
        + LIST_EXAMPLES
        + "\n"
        + PLAY_EXAMPLES
        + "\n"
        + IDENTITY_EXAMPLES,
        formatter_class=fmt,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser(
        "list", help="list the devices, scenarios or faults", epilog=LIST_EXAMPLES, formatter_class=fmt
    )
    listing.add_argument("what", nargs="?", default="devices", choices=["devices", "scenarios", "faults"])

    play = commands.add_parser("play", help="play one device", epilog=PLAY_EXAMPLES, formatter_class=fmt)
    play.add_argument("driver", help="which device to play (see 'hut-sim list')")
    play.add_argument("--link", metavar="LINK", help="pty, PATH (a pty and a symlink to it), serial, ble or mqtt")
    play.add_argument("--port", help="with --link serial: the serial port, e.g. /dev/ttyUSB1")
    play.add_argument(
        "--protocol",
        "--board",
        help="protocol generation, as the driver's setting names it (contec-cms50 protocol: 5-byte, 9-byte; "
        "healthypi board: v4, v5)",
    )
    serial = play.add_argument_group("serial line faults (as before --fault)")
    serial.add_argument("--unplug-every", type=float, metavar="S", help="fault: unplug the device every S seconds")
    serial.add_argument("--unplug-for", type=float, default=2.0, metavar="S", help="fault: stay unplugged S seconds")
    serial.add_argument(
        "--garbage", type=float, default=0.0, metavar="P", help="fault: corrupt each chunk with probability P"
    )
    ble = play.add_argument_group("BLE")
    ble.add_argument(
        "--ble",
        choices=["fake-bluez", "bumble"],
        help="fake-bluez: a fake BlueZ on a private D-Bus (no radio; the default without --transport); "
        "bumble: a GATT peripheral on a real HCI controller (the default with --transport)",
    )
    ble.add_argument("--dbus-address", help="add the device to the fake BlueZ already on this D-Bus")
    ble.add_argument(
        "--transport",
        metavar="NAME",
        help="play through bumble on this HCI transport: usb:0 (the first USB dongle), hci-socket:0 (hci0, "
        "taken from BlueZ), serial:/dev/ttyACM0[,SPEED] (an HCI UART), tcp-client:HOST:PORT, ...",
    )
    ble.add_argument("--address", help="the device's Bluetooth address (default: one per driver)")
    ble.add_argument(
        "--awake",
        type=float,
        default=DEFAULT_AWAKE_S,
        metavar="S",
        help=f"a cuff, thermometer, scale or meter drops the link S s after its last value (0: never; "
        f"default {DEFAULT_AWAKE_S:g})",
    )
    _add_device_timing(play)
    _add_scenario_arguments(play)
    _add_fault_arguments(play)
    _add_mqtt_arguments(play, hut_id=True)
    _add_common_arguments(play)

    hut = commands.add_parser(
        "hut", help="play a whole hut straight into MQTT, as a gateway would", epilog=HUT_EXAMPLES, formatter_class=fmt
    )
    hut.add_argument(
        "--devices",
        nargs="+",
        metavar="DRIVER[:PROTOCOL]",
        help="the hut's devices, each with its protocol generation if it has several (contec-cms50:9-byte, "
        "healthypi:v5; default: one of every driver hut-sim can play)",
    )
    _add_device_timing(hut)
    _add_scenario_arguments(hut)
    _add_fault_arguments(hut)
    _add_mqtt_arguments(hut, hut_id=True)
    _add_common_arguments(hut)

    load = commands.add_parser(
        "load", help="play many huts into MQTT at a set rate", epilog=LOAD_EXAMPLES, formatter_class=fmt
    )
    load.add_argument("--huts", type=int, default=10, help="how many huts (default 10)")
    load.add_argument("--rate", type=float, default=1.0, help="spot readings a second per hut (default 1)")
    load.add_argument("--hut-prefix", default="load", help="hut ids are PREFIX-0001, PREFIX-0002, ... (default load)")
    load.add_argument("--waves", action="store_true", help="also send the serial devices' waveform strips")
    load.add_argument("--devices", nargs="+", metavar="DRIVER[:PROTOCOL]", help="each hut's devices (default: all)")
    _add_scenario_arguments(load)
    _add_fault_arguments(load)
    _add_mqtt_arguments(load, hut_id=False)
    _add_common_arguments(load, default_duration=60.0)
    _add_identity_commands(commands, fmt)
    return parser


def scan_command(args: argparse.Namespace) -> Coroutine[Any, Any, None]:
    """The scanner to be, from ``scan``'s options; ValueError names an option that does not fit it."""
    serial_terminators = ("CR", "LF", "CRLF", "ETX")
    if args.hid is not None:
        if args.link is not None:
            raise ValueError("--hid writes to its own PATH; --link is for the pty of the serial scanners")
        if args.terminator in serial_terminators:
            raise ValueError("a keyboard-style scanner ends a code with a key: --terminator ENTER or TAB")
        key: Literal["ENTER", "TAB"] = "TAB" if args.terminator == "TAB" else "ENTER"
        return type_keys(args.hid, args.code, key, args.interval, args.hold, args.key_delay, args.event_size)
    if args.terminator in ("ENTER", "TAB"):
        raise ValueError(f"--terminator {args.terminator} is a key: it needs --hid")
    if args.card_reader:
        if args.terminator is not None:
            raise ValueError("a card reader's frames end in ETX by themselves: leave out --terminator")
        return present_cards(args.link, args.code, args.interval, args.hold, args.present)
    return scan(args.link, args.code, args.terminator or "CR", args.interval, args.hold)


async def session_command(args: argparse.Namespace) -> None:
    if args.action == "start":
        if not args.resident:
            raise ValueError("session start needs --resident")
        body: dict[str, Any] = {"resident_id": args.resident, "sex": args.sex, "clinical": args.clinical}
        if args.birth_date:
            body["birth_date"] = args.birth_date
        if args.age_band:
            body["age_band"] = args.age_band
        reply = await kiosk(args.kiosk, "POST", body)
        print(f"session {reply['session']} started (age band {reply.get('age_band') or 'unknown'})")
    elif args.action == "end":
        reply = await kiosk(args.kiosk, "DELETE")
        print(f"session {reply['ended']} ended")
    else:
        print(json.dumps(await kiosk(args.kiosk, "GET"), ensure_ascii=False, indent=1))


# --- settings from the arguments --------------------------------------------------------------------------


def scenario_from(args: argparse.Namespace) -> Scenario:
    """The chosen scenario with the values given on the command line; ValueError names a bad value."""
    return SCENARIOS[args.scenario].with_values(
        spo2=args.spo2,
        pulse_rate=args.pulse_rate,
        systolic=args.systolic,
        diastolic=args.diastolic,
        temperature=args.temperature,
        glucose=args.glucose,
        weight=args.weight,
        respiration_rate=args.respiration_rate,
        rhythm=Rhythm(args.rhythm) if args.rhythm else None,
        pause_every=args.pause_every,
    )


def broker_from(args: argparse.Namespace) -> Broker:
    tls = args.tls or args.ca is not None or args.cert is not None
    host, port = Broker.split(args.mqtt, tls)
    if args.key is not None and args.cert is None:
        raise ValueError("--key needs --cert")
    if args.connect_timeout <= 0:
        raise ValueError("--connect-timeout must be positive")
    return Broker(
        host,
        port,
        tls=args.tls,
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.key,
        username=args.username,
        password=args.password,
        connect_timeout=args.connect_timeout,
    )


def resolve_link(value: str | None, device: Playable) -> tuple[str, Path | None]:
    """The link kind and, for a pty with a symlink, its path. ``--link PATH`` keeps its old meaning: a pty
    with a symlink at PATH (write ./ble for a symlink called "ble")."""
    if not device.links:
        raise ValueError(f"{device.driver} {_not_played(device.driver)}")
    if value is None:
        return device.links[0], None
    if value in LINKS:
        kind, symlink = value, None
    else:
        kind, symlink = "pty", Path(value)
    if kind not in device.links:
        raise ValueError(f"{device.driver} plays over {', '.join(device.links)}, not {kind}")
    return kind, symlink


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--timezone {name!r} is not an IANA time zone (for example Asia/Shanghai)") from None


def gatt_device(driver: str, scenario: Scenario, args: argparse.Namespace, faults: frozenset[Fault]) -> GattDevice:
    return GATT_DEVICES[driver](
        scenario, seed=args.seed, faults=faults, interval=args.interval, steady=args.steady, tz=_zone(args.timezone)
    )


def default_address(driver: str) -> str:
    """A static random address (top bits 11) per driver: C0:48:48:53 is "HHS", then the driver's place."""
    return f"C0:48:48:53:00:{list(GATT_DEVICES).index(driver) + 1:02X}"


def parse_devices(entries: Sequence[str] | None) -> list[tuple[str, str | None]]:
    """``driver`` or ``driver:protocol`` entries (default: every driver hut-sim can play)."""
    if not entries:
        return [(p.driver, None) for p in catalog() if p.links]
    out = []
    for entry in entries:
        driver, _, protocol = entry.partition(":")
        out.append((driver, protocol or None))
    return out


def hut_feeds(
    devices: Sequence[tuple[str, str | None]],
    scenario: Scenario,
    faults: frozenset[Fault],
    *,
    seed: int | None = None,
    steady: bool = False,
    interval: float = DEFAULT_INTERVAL_S,
    timezone: str = DEFAULT_TIMEZONE,
) -> list[DeviceFeed]:
    """One feed per device, named after its driver (numbered when a driver comes twice). A fault goes to the
    devices that can show it on MQTT; ValueError when none can."""
    feeds: list[DeviceFeed] = []
    seen: dict[str, int] = {}
    shown: set[Fault] = set()
    tz = _zone(timezone)
    for index, (driver, protocol) in enumerate(devices):
        try:
            device = playable(driver)
        except DriverNotFoundError as exc:
            raise ValueError(str(exc)) from None
        if "mqtt" not in device.links:
            raise ValueError(f"{driver} {_not_played(driver)}")
        if protocol is not None and driver not in PLAYERS:
            raise ValueError(f"{driver} has no protocol generations (--devices {driver}:{protocol})")
        seen[driver] = seen.get(driver, 0) + 1
        name = driver if seen[driver] == 1 else f"{driver}-{seen[driver]}"
        device_seed = None if seed is None else seed + index
        mine = frozenset(faults & device.faults_on("mqtt"))
        shown |= mine
        if driver in PLAYERS:
            player = PLAYERS[driver].for_protocol(protocol)
            feeds.append(SerialFeed(name, player, scenario, seed=device_seed, faults=mine & player.faults))
        else:
            gatt = GATT_DEVICES[driver](
                scenario,
                seed=device_seed,
                faults=mine - {Fault.GARBAGE},
                interval=interval,
                steady=steady,
                tz=tz,
            )
            feeds.append(GattFeed(name, gatt))
    # Garbage on MQTT is whole messages, from the hut rather than from one device.
    missing = faults - shown - {Fault.GARBAGE}
    if missing:
        raise ValueError(f"no device of this hut can show {', '.join(sorted(missing))} over MQTT")
    return feeds


# --- the commands ---------------------------------------------------------------------------------------------


def list_command(what: str) -> None:
    if what == "scenarios":
        for name, scenario in SCENARIOS.items():
            print(f"{name:<22} {scenario.description}")
        return
    if what == "faults":
        for fault, spec in FAULTS.items():
            print(f"{fault:<20} links: {', '.join(link for link in LINKS if link in spec.links)}")
            print(f"{'':<20} {spec.description}")
        return
    for device in catalog():
        links = ", ".join(device.links) if device.links else f"none: it {_not_played(device.driver)}"
        print(f"{device.driver:<20} {device.description}")
        print(f"{'':<20}   links: {links}")
        faults = device.faults | signal_faults(device.driver)
        if faults:
            print(f"{'':<20}   faults: {', '.join(sorted(faults))}")
        for protocol, description in device.protocols.items():
            print(f"{'':<20}   --{device.setting} {protocol}: {description}")


# Identity sources give no readings: hut-sim scan plays them, not play or hut.
SCANNED = {
    "id-scanner": "hut-sim scan --link PATH",
    "card-reader": "hut-sim scan --card-reader --link PATH",
    "hid-scanner": "hut-sim scan --hid PATH",
}


def _not_played(driver: str) -> str:
    scanned = SCANNED.get(driver)
    return f"gives no readings; {scanned} plays it" if scanned else "has no simulator yet"


def signal_faults(driver: str) -> frozenset[Fault]:
    """The faults a serial device shows in its signal (over a pty or a serial port), in any generation."""
    player = PLAYERS.get(driver)
    if player is None:
        return frozenset()
    return player.signal_faults.union(*(p.signal_faults for p in player.protocols.values()))


async def play_command(args: argparse.Namespace, device: Playable, link: str, symlink: Path | None) -> None:
    scenario = scenario_from(args)
    faults = frozenset(Fault(f) for f in args.fault)
    progress = Progress(quiet=args.quiet)
    if link in ("pty", "serial"):
        player = PLAYERS[device.driver].for_protocol(args.protocol)
        check_faults(faults, driver=device.driver, link=link, supported=player.serial_faults)
        byte_link: ByteLink
        if link == "serial":
            if not args.port:
                raise ValueError("--link serial needs --port, the serial port to play on")
            byte_link = SerialPortLink(args.port, player.serial_link.settings)
        else:
            byte_link = PtyLink(symlink)
        settings = SerialPlay.with_faults(
            faults,
            duration=args.duration,
            seed=args.seed,
            unplug_every=args.unplug_every,
            unplug_for=args.unplug_for,
            garbage=args.garbage,
        )
        if player.default_protocol is not None:
            progress.note(
                f'{device.driver} plays {player.setting} = "{player.default_protocol}": set the same for the gateway'
            )
        await play_serial(player, scenario, byte_link, settings, progress)
        return
    check_faults(faults, driver=device.driver, link=link, supported=device.faults)
    if link == "mqtt":
        await hut_command(args, [(device.driver, args.protocol)])
        return
    if args.protocol is not None:
        raise ValueError(f"{device.driver} has no protocol generations")
    backend = ble_backend(args)
    gatt = gatt_device(device.driver, scenario, args, faults)
    address = (args.address or default_address(device.driver)).upper()
    if not MAC.match(address):
        raise ValueError(f"--address {args.address!r} is not a Bluetooth address like C0:48:48:53:00:01")
    if backend == "bumble":
        await play_bumble(args, gatt, address, progress)
        return
    async with fake_bluez(args.dbus_address) as fake:
        peripheral = await add_fake_peripheral(fake, gatt, address)
        print(f"DBUS_SYSTEM_BUS_ADDRESS={fake.bus_address}", flush=True)
        progress.note(
            f"{device.driver} is {address} ({gatt.local_name}), service 0x{gatt.profile.service:04X}, "
            f"scenario {scenario.name}"
        )
        stats = await BlePlayer(gatt, peripheral, progress, awake=args.awake).run(args.duration)
    progress.note(
        f"{stats.measurements} measurements, {stats.delivered} values delivered, {stats.connections} connections"
    )


def ble_backend(args: argparse.Namespace) -> str:
    """fake-bluez or bumble: as --ble says, else bumble when a --transport is given."""
    backend: str = args.ble or ("bumble" if args.transport else "fake-bluez")
    if backend == "fake-bluez" and args.transport:
        raise ValueError("--transport is for --ble bumble; the fake BlueZ needs no radio")
    if backend == "bumble" and args.dbus_address:
        raise ValueError("--dbus-address is for --ble fake-bluez; bumble plays on the --transport's controller")
    return backend


async def play_bumble(args: argparse.Namespace, gatt: GattDevice, address: str, progress: Progress) -> None:
    transport = require_bumble(args.transport)
    from healthhut.firmware_sim.links.bumble_peripheral import bumble_peripheral

    async with bumble_peripheral(transport, gatt, address) as peripheral:
        print(f"{address} on {transport}", flush=True)
        progress.note(
            f"{gatt.driver} is {address} ({gatt.local_name}) on {transport}, service 0x{gatt.profile.service:04X}, "
            f"scenario {gatt.scenario.name}"
        )
        stats = await BlePlayer(gatt, peripheral, progress, awake=args.awake).run(args.duration)
    progress.note(
        f"{stats.measurements} measurements, {stats.delivered} values delivered, {stats.connections} connections"
    )


async def hut_command(args: argparse.Namespace, devices: Sequence[tuple[str, str | None]] | None = None) -> None:
    if not args.hut_id:
        raise ValueError("--hut-id is required: the hut's id, as its gateway would use it")
    broker = broker_from(args)
    scenario = scenario_from(args)
    faults = frozenset(Fault(f) for f in args.fault)
    feeds = hut_feeds(
        devices or parse_devices(args.devices),
        scenario,
        faults,
        seed=args.seed,
        steady=args.steady,
        interval=args.interval,
        timezone=args.timezone,
    )
    sim = HutSimulation(args.hut_id, feeds, faults=faults, seed=args.seed)
    print(f"hut {sim.hut_id} boot {sim.boot_id} on {broker.describe()} with {len(feeds)} devices", flush=True)
    counters = MqttCounters()
    run = HutRun(duration=args.duration, batch_interval=args.batch_interval)
    await _with_progress(counters, args.quiet, run_hut(sim, broker, run, counters))
    _summary("hut", counters)


async def load_command(args: argparse.Namespace) -> None:
    if args.huts < 1 or args.rate <= 0 or args.batch_interval <= 0:
        raise ValueError("--huts, --rate and --batch-interval must be positive")
    broker = broker_from(args)
    scenario = scenario_from(args)
    faults = frozenset(Fault(f) for f in args.fault)
    devices = parse_devices(args.devices)
    huts = []
    for number in range(1, args.huts + 1):
        seed = None if args.seed is None else args.seed * 10_000 + number
        feeds = hut_feeds(devices, scenario, faults, seed=seed, steady=args.steady)
        huts.append(
            HutSimulation(f"{args.hut_prefix}-{number:04d}", feeds, faults=faults, device_clock=False, seed=seed)
        )
    run = HutRun(duration=args.duration, batch_interval=args.batch_interval, rate=args.rate, waves=args.waves)
    counters = MqttCounters()
    started = time.monotonic()

    async def all_huts() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for sim in huts:
                    group.create_task(run_hut(sim, broker, run, counters), name=f"hut:{sim.hut_id}")
        except* SimError as failed:
            # Every hut meets the same broker: one hut's error says it for all of them.
            raise _first(failed) from None

    await _with_progress(counters, args.quiet, all_huts())
    _summary("load", counters, seconds=time.monotonic() - started)


def _first(group: BaseExceptionGroup[SimError]) -> SimError:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _with_progress(counters: MqttCounters, quiet: bool, job: Awaitable[None]) -> None:
    progress = Progress(quiet=quiet)
    reporter = asyncio.create_task(report_progress(counters, progress.note, progress.every)) if not quiet else None
    try:
        await job
    finally:
        if reporter is not None:
            reporter.cancel()


def _summary(what: str, counters: MqttCounters, seconds: float | None = None) -> None:
    took = f" seconds={seconds:.1f}" if seconds is not None else ""
    print(
        f"{what}: huts={counters.huts} messages={counters.messages} readings={counters.items} "
        f"garbage={counters.garbage} errors={counters.errors} acknowledged={counters.acknowledged}{took}",
        flush=True,
    )


async def _until_terminated(job: Coroutine[Any, Any, None]) -> None:
    """Run ``job``; SIGTERM (a service manager, a test harness) ends it as Ctrl-C does, cleaning up: a fake
    BlueZ stopped, a hut's "offline" said."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(job)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # Ctrl-C: asyncio.run turns it into KeyboardInterrupt
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        list_command(args.what)
        return EXIT_OK
    try:
        if args.command == "play":
            try:
                device = playable(args.driver)
            except DriverNotFoundError as exc:
                parser.error(str(exc))
            if args.protocol is not None and device.driver in PLAYERS:
                PLAYERS[device.driver].for_protocol(args.protocol)
            link, symlink = resolve_link(args.link, device)
            job = play_command(args, device, link, symlink)
        elif args.command == "hut":
            job = hut_command(args)
        elif args.command == "scan":
            job = scan_command(args)
        elif args.command == "session":
            job = session_command(args)
        else:
            job = load_command(args)
    except (KeyError, ValueError) as exc:
        parser.error(exc.args[0] if exc.args else str(exc))
    try:
        # Ctrl-C is how a technician ends an open-ended run; it is not an error.
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_until_terminated(job))
    except (KeyError, ValueError) as exc:
        print(f"hut-sim: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (SimError, ServerError) as exc:
        print(f"hut-sim: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
