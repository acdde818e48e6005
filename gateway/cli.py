"""``hut-gateway``: run the hut daemon, or check its config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from healthhut.gateway import provision
from healthhut.protocol.cli import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    add_logging_arguments,
    configure_logging,
    print_config_error,
)
from healthhut.protocol.configfile import ConfigError

EXAMPLES = """\
examples:
  hut-gateway run --config /etc/healthhut/gateway.toml
  hut-gateway check-config /etc/healthhut/gateway.toml
  hut-gateway doctor --config /etc/healthhut/gateway.toml
  hut-gateway status --config /etc/healthhut/gateway.toml
  hut-gateway run --config gateway.toml --log-format json --log-level debug
  sudo hut-gateway provision --config /etc/healthhut/gateway.toml   # the hut's key and certificate request

The example config, with every key explained, is gateway/gateway.example.toml.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hut-gateway",
        description="Health hut gateway: reads the hut's devices and forwards readings over MQTT.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run", help="run the gateway daemon", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    run.add_argument("--config", "-c", type=Path, required=True, help="gateway TOML config")
    add_logging_arguments(run)
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config", type=Path)
    doctor = commands.add_parser(
        "doctor",
        help="check the config, state folder, disk, spool, clock, devices, Bluetooth and broker; exit 1 on a failure",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("--config", "-c", type=Path, required=True, help="gateway TOML config")
    status = commands.add_parser(
        "status",
        help="what the running gateway reports: devices, spool, broker; exit 1 if it is not running or offline",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--config", "-c", type=Path, required=True, help="gateway TOML config")
    status.add_argument("--json", action="store_true", help="print the status file as it is")
    provision.add_parser(commands)
    return parser


def _status(state_dir: Path, as_json: bool) -> int:
    import json

    from healthhut.gateway.status import FILE_NAME, render

    path = state_dir / FILE_NAME
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"hut-gateway: no status at {path}: the gateway has not run with this state folder", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, ValueError) as exc:
        print(f"hut-gateway: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if as_json:
        print(json.dumps(status, indent=1))
        return EXIT_OK
    text, healthy = render(status)
    print(text)
    return EXIT_OK if healthy else EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "provision":  # the config, if any, only names the hut and its files
        return provision.run(args)
    # Imported late so that --help works even where a runtime dependency is missing.
    from healthhut.gateway.config import load_config
    from healthhut.protocol.pseudonym import PseudonymKey, PseudonymKeyError

    try:
        config = load_config(args.config)
        if config.identity is not None and args.command not in (
            "doctor",
            "status",
        ):  # the doctor reports it with the rest
            PseudonymKey.load(config.identity.key_file)
    except (ConfigError, PseudonymKeyError) as exc:
        print_config_error("hut-gateway", exc)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{args.config}: OK (hut {config.hut_id}, {len(config.device_configs)} device(s))")
        return EXIT_OK
    if args.command == "status":
        return _status(config.state_dir, args.json)
    if args.command == "doctor":
        from healthhut.gateway.doctor import examine, report

        findings = asyncio.run(examine(config))
        print(report(args.config, findings))
        return EXIT_FAILURE if any(f.verdict == "FAIL" for f in findings) else EXIT_OK
    configure_logging(args.log_level, args.log_format)
    from healthhut.gateway.app import Gateway

    asyncio.run(Gateway(config, args.config).run())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
