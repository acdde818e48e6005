"""``hut-gateway provision``: make the hut's private key and a signing request for the deployment CA.

The key is made on the hut and stays there; only the request (public) goes to the CA, and the
certificate comes back. Re-running keeps the key and writes a fresh request, which is how a
certificate is renewed.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from healthhut.protocol.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from healthhut.protocol.configfile import ConfigError, TlsConfig
from healthhut.protocol.pki import KEY_TYPES, PkiError, check_hut_name, ensure_private_key, make_request

DEFAULT_FOLDER = Path("/etc/healthhut/tls")
# The user systemd/hut-gateway.service runs the gateway as; it must be able to read the key.
SERVICE_USER = "healthhut"

EXAMPLES = """\
examples:
  sudo hut-gateway provision --config /etc/healthhut/gateway.toml
  sudo hut-gateway provision --hut-id hut-0001                 # into /etc/healthhut/tls
  hut-gateway provision --hut-id hut-0001 --dir ./tls --key-type rsa
  sudo hut-gateway provision --config /etc/healthhut/gateway.toml --force   # a new key (a lost or leaked one)

The key goes to hut.key (mode 0600) and is never printed; the request to HUT_ID.csr beside it. With
--config, the files are the ones its [mqtt.tls] names, if it names them. Running it again keeps the key
and writes a new request (to renew the certificate); --force replaces the key.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "provision",
        help="make this hut's private key and a certificate signing request for the deployment CA",
        description="Make this hut's private key and a certificate signing request (CN = the hut id).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", "-c", type=Path, help="gateway TOML config: its hut_id and [mqtt.tls] paths")
    which.add_argument("--hut-id", help="the hut id, when there is no config yet")
    parser.add_argument("--dir", type=Path, help=f"folder for the key and request (default: {DEFAULT_FOLDER})")
    parser.add_argument("--key-type", choices=KEY_TYPES, default="ec", help="EC P-256 (default) or RSA 2048")
    parser.add_argument("--force", action="store_true", help="replace an existing key with a new one")
    parser.add_argument(
        "--owner",
        default=SERVICE_USER,
        help=f"when run as root, give the key to this user, the gateway's (default: {SERVICE_USER})",
    )


@dataclass(frozen=True)
class _Files:
    key: Path
    request: Path
    cert: Path
    ca: Path
    configured: bool  # the config already names these files


def _files(hut_id: str, folder: Path | None, tls: TlsConfig | None) -> _Files:
    if folder is None and tls is not None and tls.key_file is not None:
        key = tls.key_file
        cert = tls.cert_file or key.parent / "hut.pem"
        return _Files(key, key.parent / f"{hut_id}.csr", cert, tls.ca_file, tls.cert_file is not None)
    folder = (folder or DEFAULT_FOLDER).absolute()  # the config needs absolute paths
    return _Files(folder / "hut.key", folder / f"{hut_id}.csr", folder / "hut.pem", folder / "ca.pem", False)


def _give_to_owner(files: _Files, owner: str, made_folder: bool) -> str | None:
    """When root, hand the key to the gateway's user; a note for the technician if that cannot be done."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(owner)
    except KeyError:
        return f"there is no user {owner} yet: once the gateway is installed, chown {owner}: {files.key}"
    os.chown(files.key, user.pw_uid, user.pw_gid)
    if made_folder:  # root's, and the gateway's group may enter it to read the key
        os.chown(files.key.parent, 0, user.pw_gid)
    return None


def run(args: argparse.Namespace) -> int:
    tls: TlsConfig | None = None
    config_path: Path | None = args.config
    if config_path is not None:
        from healthhut.gateway.config import load_config

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            print(f"hut-gateway: config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        hut_id, tls = config.hut_id, config.mqtt.tls
    else:
        hut_id = args.hut_id
    try:
        check_hut_name(hut_id)
    except ValueError as exc:
        print(f"hut-gateway: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    files = _files(hut_id, args.dir, tls)
    try:
        made_folder = not files.key.parent.exists()
        files.key.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        made = ensure_private_key(files.key, args.key_type, force=args.force)
        note = _give_to_owner(files, args.owner, made_folder)
        make_request(files.key, files.request, hut_id)
    except (PkiError, OSError) as exc:
        print(f"hut-gateway: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(_report(hut_id, files, made, note, config_path))
    return EXIT_OK


def _report(hut_id: str, files: _Files, made: bool, note: str | None, config_path: Path | None) -> str:
    if made:
        key = f"made a new private key {files.key} (mode 0600); it never leaves this hut"
    else:
        key = f"kept the private key {files.key} (--force makes a new one, and the current certificate then stops)"
    config_name = config_path or "/etc/healthhut/gateway.toml"
    lines = [
        f"hut {hut_id}: {key}",
        f"certificate signing request: {files.request} (CN={hut_id}; it holds no secret)",
        "",
        "next:",
        f"  1. take {files.request.name} to the deployment CA (it may travel by e-mail or USB stick) and run there:",
        f"       hut-collector ca sign --csr {files.request.name} --out {hut_id}.pem",
        f"  2. put the {hut_id}.pem it writes here as {files.cert}, and the CA's ca.pem as {files.ca}",
    ]
    if files.configured:
        lines.append(f"  3. {config_name} already names these files in [mqtt.tls]")
    else:
        lines += [
            f"  3. in {config_name}, connect to the broker's TLS listener with them:",
            "       [mqtt]",
            '       host = "broker.example.org"',
            "       port = 8883",
            "       [mqtt.tls]",
            f'       ca_file = "{files.ca}"',
            f'       cert_file = "{files.cert}"',
            f'       key_file = "{files.key}"',
        ]
    lines.append(f"  4. hut-gateway doctor --config {config_name}; then systemctl restart hut-gateway")
    if note is not None:
        lines += ["", f"note: {note}"]
    return "\n".join(lines)
