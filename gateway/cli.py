"""``hut-gateway``: run the hut daemon, or check its config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from healthhut.protocol.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, add_logging_arguments, configure_logging
from healthhut.protocol.configfile import ConfigError

EXAMPLES = """\
examples:
  hut-gateway run --config /etc/healthhut/gateway.toml
  hut-gateway check-config /etc/healthhut/gateway.toml
  hut-gateway doctor --config /etc/healthhut/gateway.toml
  hut-gateway run --config gateway.toml --log-format json --log-level debug

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported late so that --help works even where a runtime dependency is missing.
    from healthhut.gateway.config import load_config
    from healthhut.protocol.pseudonym import PseudonymKey, PseudonymKeyError

    try:
        config = load_config(args.config)
        if config.identity is not None and args.command != "doctor":  # the doctor reports it with the rest
            PseudonymKey.load(config.identity.key_file)
    except (ConfigError, PseudonymKeyError) as exc:
        print(f"hut-gateway: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(f"{args.config}: OK (hut {config.hut_id}, {len(config.device_configs)} device(s))")
        return EXIT_OK
    if args.command == "doctor":
        from healthhut.gateway.doctor import examine, report

        findings = asyncio.run(examine(config))
        print(report(args.config, findings))
        return EXIT_FAILURE if any(f.verdict == "FAIL" for f in findings) else EXIT_OK
    configure_logging(args.log_level, args.log_format)
    from healthhut.gateway.app import Gateway

    asyncio.run(Gateway(config).run())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
