"""``hut-collector ca``: the deployment's certificate authority, which issues the huts', the collectors'
and the broker's certificates (``healthhut.protocol.pki`` does the work, with openssl)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from healthhut.protocol.cli import EXIT_FAILURE, EXIT_OK
from healthhut.protocol.pki import (
    CRL,
    CRL_DAYS,
    KEY_TYPES,
    REVOCATION_REASONS,
    SERVICE_NAMES,
    CertificateAuthority,
    Issued,
    PkiError,
)

DEFAULT_FOLDER = Path("/etc/healthhut/ca")
CA_DAYS = 3650
LEAF_DAYS = 730

EXAMPLES = """\
examples:
  hut-collector ca init --name "Example City health huts CA"
  hut-collector ca sign --csr hut-0001.csr --out hut-0001.pem
  hut-collector ca sign --csr hut-0001.csr --out hut-0001.pem --days 365
  hut-collector ca server --name broker.example.org --ip 203.0.113.7 --out-dir broker/
  hut-collector ca client --name collector --out-dir collector/
  hut-collector ca init --ca-dir ./test-ca --name "bench CA" --days 30
  hut-collector ca revoke --hut hut-0001 --reason keyCompromise    # a stolen or lost hut
  hut-collector ca revoke --cert old-hut-0001.pem --reason superseded
  hut-collector ca crl --out crl.pem                               # the revocation list again

The CA lives in --ca-dir (default /etc/healthhut/ca): ca.key (mode 0600; keep it off the network and
backed up) and ca.pem (public: every hut, collector and the broker need a copy). A hut makes its own
key and request with "hut-gateway provision"; "ca sign" signs the request only if its subject is
CN=<a hut id>, so a hut's certificate lets it write only under hh/v1/huts/<its id>/. "ca revoke" shuts
a hut's certificate out: it rewrites the revocation list (crl.pem in the CA's folder), which goes to the
broker as /etc/mosquitto/certs/crl.pem; restart mosquitto to read it.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    ca = commands.add_parser(
        "ca",
        help="the deployment CA: make it, sign huts' requests, issue the broker's and services' certificates",
        description="The deployment's certificate authority for the broker's mutual TLS.",
        epilog=EXAMPLES,
        formatter_class=fmt,
    )
    actions = ca.add_subparsers(dest="ca_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES, formatter_class=fmt)
        parser.add_argument(
            "--ca-dir", type=Path, default=DEFAULT_FOLDER, help=f"the CA's folder (default: {DEFAULT_FOLDER})"
        )
        return parser

    init = action("init", "make a new CA: ca.key (mode 0600) and a self-signed ca.pem")
    init.add_argument("--name", default="healthhut deployment CA", help="the CA certificate's name (CN)")
    init.add_argument("--days", type=int, default=CA_DAYS, help=f"validity (default: {CA_DAYS})")
    init.add_argument("--key-type", choices=KEY_TYPES, default="ec", help="EC P-256 (default) or RSA 2048")
    sign = action("sign", "issue a hut's client certificate for the signing request that the hut made")
    sign.add_argument("--csr", type=Path, required=True, help="the request (hut-gateway provision wrote it)")
    sign.add_argument("--out", type=Path, required=True, help="where to write the certificate")
    sign.add_argument("--days", type=int, default=LEAF_DAYS, help=f"validity (default: {LEAF_DAYS})")
    server = action("server", "make the broker's key and server certificate (server.key, server.pem, ca.pem)")
    server.add_argument("--name", required=True, help="the broker's DNS name, as the huts' config gives it")
    server.add_argument("--dns", action="append", default=[], help="another DNS name for it (repeatable)")
    server.add_argument("--ip", action="append", default=[], help="an IP address for it (repeatable)")
    server.add_argument("--out-dir", type=Path, default=Path(), help="folder to write to (default: here)")
    server.add_argument("--days", type=int, default=LEAF_DAYS, help=f"validity (default: {LEAF_DAYS})")
    server.add_argument("--force", action="store_true", help="replace an existing server.key")
    names = ", ".join(sorted(SERVICE_NAMES))
    client = action("client", f"make a service's key and client certificate ({names}: the ACL's users)")
    client.add_argument("--name", required=True, choices=sorted(SERVICE_NAMES), help="the service")
    client.add_argument("--out-dir", type=Path, default=Path(), help="folder to write to (default: here)")
    client.add_argument("--days", type=int, default=LEAF_DAYS, help=f"validity (default: {LEAF_DAYS})")
    client.add_argument("--force", action="store_true", help="replace an existing NAME.key")
    revoke = action("revoke", "revoke a hut's certificate (all of them, by hut id) or one certificate file")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--hut", help="the hut id: every certificate this CA issued to it")
    which.add_argument("--cert", type=Path, help="one certificate file this CA issued")
    revoke.add_argument(
        "--reason",
        choices=REVOCATION_REASONS,
        default="unspecified",
        help="recorded in the list (default: unspecified)",
    )
    crl = action("crl", f"write the revocation list again (it lasts {CRL_DAYS} days by default)")
    crl.add_argument("--out", type=Path, help=f"where to write it (default: {CRL} in the CA's folder)")
    crl.add_argument("--days", type=int, default=CRL_DAYS, help=f"validity (default: {CRL_DAYS})")


def _issued(issued: Issued) -> str:
    return f"{issued.path}: CN={issued.common_name}, serial {issued.serial}, valid until {issued.not_after}"


def run(args: argparse.Namespace) -> int:
    ca = CertificateAuthority(args.ca_dir)
    try:
        if args.ca_command == "init":
            CertificateAuthority.create(args.ca_dir, args.name, days=args.days, key_type=args.key_type)
            print(f"made the CA in {args.ca_dir}: {ca.key} (mode 0600; keep it offline and backed up), {ca.cert}")
            print(f"next: copy {ca.cert} to the broker, the collectors and every hut; it holds no secret")
        elif args.ca_command == "sign":
            print(_issued(ca.sign_hut(args.csr, args.out, days=args.days)))
            print(f"next: send {args.out} and {ca.cert} back to the hut (neither holds a secret)")
        elif args.ca_command == "server":
            key, issued = ca.issue_server(
                args.name, args.out_dir, ips=args.ip, dns=args.dns, days=args.days, force=args.force
            )
            print(_issued(issued))
            print(
                f"next: install {key} (mode 0600), {issued.path}, {args.out_dir / 'ca.pem'} and "
                f"{args.out_dir / CRL} as the broker's keyfile, certfile, cafile and crlfile "
                "(mosquitto/healthhut.conf: /etc/mosquitto/certs/server.key, server.pem, ca.pem, crl.pem); "
                "the key must be readable by the user mosquitto runs as"
            )
        elif args.ca_command == "revoke":
            certs = [args.cert] if args.cert is not None else ca.issued_to(args.hut)
            if not certs:
                raise PkiError(f"this CA has no certificate of {args.hut} on record; revoke it with --cert FILE")
            for cert in certs:
                issued = ca.revoke(cert, args.reason)
                print(f"revoked {cert}: CN={issued.common_name}, serial {issued.serial} ({args.reason})")
            print(
                f"next: copy {ca.folder / CRL} to the broker as /etc/mosquitto/certs/crl.pem and restart mosquitto; "
                "until then the certificate still connects"
            )
        elif args.ca_command == "crl":
            out = ca.write_crl(args.out or ca.folder / CRL, days=args.days)
            print(f"wrote {out}: {len(ca.revoked_serials())} certificate(s) revoked, valid for {args.days} days")
        else:
            key, issued = ca.issue_service(args.name, args.out_dir, days=args.days, force=args.force)
            print(_issued(issued))
            print(
                f"next: install {key} (mode 0600, owned by the service's user), {issued.path} and "
                f"{args.out_dir / 'ca.pem'} where the {args.name}'s config [mqtt.tls] names them"
            )
    except (PkiError, OSError) as exc:
        print(f"hut-collector: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
