"""The deployment's certificates: a hut's key and signing request, the CA, and the certificates it issues.

Made with the ``openssl`` command line, which Debian and Raspberry Pi OS always have. The broker reads a
client certificate's CN as its MQTT user name (``use_identity_as_username``), so the CN is what the ACL
grants: the CA signs a hut's request only for a CN that is a hut id, and never for a service's name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from healthhut.protocol.topics import check_hut_id

KeyType = Literal["ec", "rsa"]
KEY_TYPES: tuple[KeyType, ...] = ("ec", "rsa")
# The services that mosquitto/healthhut.acl names with "user": each is granted far more than a hut.
SERVICE_NAMES = frozenset({"collector", "alerts-app"})
CA_KEY = "ca.key"
CA_CERT = "ca.pem"
# The revocation list the broker checks every client certificate against (mosquitto's crlfile), and, in
# the CA's folder, a copy of every certificate issued, so that a hut's can be revoked by its id alone.
CRL = "crl.pem"
ISSUED = "issued"
_INDEX = "index.txt"  # openssl ca's database: the serials revoked
# An expired list makes OpenSSL refuse every client, so the list lasts as long as the CA by default; it is
# written again at every revocation, which is when a broker needs a new one.
CRL_DAYS = 3650
REVOCATION_REASONS = ("unspecified", "keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged")
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
_GENPKEY = {
    "ec": ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
    "rsa": ("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
}
# Characters that the openssl -subj syntax gives a meaning to, and control characters.
_UNSAFE_NAME = re.compile(r"[/\\=+\"\x00-\x1f\x7f]")
_CLIENT = "basicConstraints = critical, CA:FALSE\nextendedKeyUsage = clientAuth\n"
_SERVER = "basicConstraints = critical, CA:FALSE\nextendedKeyUsage = serverAuth\n"
_KEY_IDS = "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"


class PkiError(Exception):
    """A key, request or certificate that cannot be made or is refused; ``path`` is the file concerned."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)


@dataclass(frozen=True)
class Request:
    """A certificate signing request whose own signature has been checked."""

    path: Path
    common_name: str
    key_type: KeyType
    key_bits: int


@dataclass(frozen=True)
class Issued:
    """A certificate just written: its file, subject CN, serial (hex) and end of validity (openssl's text)."""

    path: Path
    common_name: str
    serial: str
    not_after: str


def check_hut_name(name: str) -> str:
    """``name`` if a hut may hold a certificate for it: a hut id, and no service's name."""
    check_hut_id(name)
    if name in SERVICE_NAMES:
        raise ValueError(f"{name!r} is the broker's name for a service, which may read every hut, not a hut id")
    return name


def _run(args: Sequence[str], stdin: bytes | None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False, timeout=120, cwd=cwd)
    except FileNotFoundError:
        raise PkiError("the openssl command is missing (Debian package openssl)") from None


def _failure(result: subprocess.CompletedProcess[bytes], what: str, path: Path | None) -> PkiError:
    errors = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
    return PkiError(f"openssl could not {what}: {errors[-1] if errors else f'exit status {result.returncode}'}", path)


def _openssl_bytes(
    *args: str, what: str, path: Path | None = None, stdin: bytes | None = None, cwd: Path | None = None
) -> bytes:
    """Run openssl and return its standard output; PkiError with openssl's own reason if it fails."""
    result = _run(args, stdin, cwd)
    if result.returncode != 0:
        raise _failure(result, what, path)
    return result.stdout


def _openssl(*args: str, what: str, path: Path | None = None, stdin: bytes | None = None) -> str:
    return _openssl_bytes(*args, what=what, path=path, stdin=stdin).decode("utf-8", errors="replace")


def _minimal_config(folder: str, extensions: str = "") -> str:
    """An openssl config of our own, so that the system's (or $OPENSSL_CONF's) defaults add nothing."""
    path = Path(folder) / "openssl.cnf"
    section = "x509_extensions = ext\n" if extensions else ""
    path.write_text(f"[req]\ndistinguished_name = dn\n{section}[dn]\n[ext]\n{extensions}")
    return str(path)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes, *, mode: int, replace: bool) -> None:
    """Write ``path`` whole or not at all, with ``mode`` from the moment it exists. Without ``replace``, an
    existing file is kept and PkiError raised."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away; never added any
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)  # fails if the file exists, where a rename would overwrite it
            except FileExistsError:
                raise PkiError("already exists; refusing to overwrite it", path) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    _fsync_folder(path.parent)


def check_private_key(path: Path) -> None:
    """PkiError unless ``path`` is a private key that openssl can read and nobody but its owner may read."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise PkiError(f"cannot read the private key: {exc.strerror}", path) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PkiError(f"the private key is readable by others (mode {stat.S_IMODE(mode):04o}): chmod 600 it", path)
    _openssl("pkey", "-in", str(path), "-noout", what="read the private key", path=path)


def ensure_private_key(path: Path, key_type: KeyType = "ec", *, force: bool = False) -> bool:
    """Make a private key at ``path`` (mode 0600) unless one is there; True if it was made.

    An existing key is kept, and checked, unless ``force``: then a new one replaces it, atomically. The key
    travels from openssl to the file through a pipe; it is never printed.
    """
    if key_type not in KEY_TYPES:
        raise PkiError(f"unknown key type {key_type!r} (one of {', '.join(KEY_TYPES)})")
    if not force and path.exists():
        check_private_key(path)
        return False
    key = _openssl_bytes("genpkey", *_GENPKEY[key_type], what=f"make an {key_type.upper()} key", path=path)
    _write_file(path, key, mode=0o600, replace=force)
    return True


def _subject_name(name: str) -> str:
    if not name or len(name) > 64 or _UNSAFE_NAME.search(name):
        raise PkiError(f'{name!r} cannot be a certificate name: 1-64 characters, none of / \\ = + " or controls')
    return f"/CN={name}"


def make_request(key: Path, csr: Path, common_name: str) -> None:
    """Write a signing request for ``key`` with the subject ``CN=common_name`` alone (a public file)."""
    subject = _subject_name(common_name)
    with tempfile.TemporaryDirectory(prefix="healthhut-pki-") as work:
        pem = _openssl_bytes(
            "req", "-new", "-utf8", "-sha256", "-config", _minimal_config(work), "-key", str(key),
            "-subj", subject, what="make the signing request", path=csr,
        )  # fmt: skip
    _write_file(csr, pem, mode=0o644, replace=True)


def read_request(csr: Path) -> Request:
    """The request in ``csr`` after checking its own signature and its key; PkiError naming the file if not."""
    try:
        pem = csr.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read the signing request: {exc.strerror}", csr) from None
    common = ("req", "-noout", "-in", "-")
    what = "read the signing request (is it a PEM certificate request?)"
    result = _run((*common, "-verify"), pem)
    # openssl 3.0 exits 0 even when the signature does not match, so its verdict is read from the text.
    verdict = (result.stdout + result.stderr).decode("utf-8", errors="replace")
    if result.returncode != 0 and "verify" not in verdict:
        raise _failure(result, what, csr)
    if "verify OK" not in verdict or "fail" in verdict:
        raise PkiError("the request's signature does not match its contents: it was altered; refusing", csr)
    subject = _openssl(*common, "-subject", "-nameopt", "RFC2253", stdin=pem, what=what, path=csr).strip()
    subject = subject.removeprefix("subject=").strip()
    if not subject.startswith("CN=") or not subject[3:]:
        raise PkiError(f"the request's subject must be a CN alone, not {subject!r}; refusing", csr)
    text = _openssl(*common, "-text", stdin=pem, what=what, path=csr)
    algorithm = re.search(r"Public Key Algorithm: (\S+)", text)
    bits = re.search(r"Public-Key: \((\d+) bit\)", text)
    key_type: KeyType | None = None
    if algorithm is not None and algorithm.group(1) == "rsaEncryption":
        key_type = "rsa"
    elif algorithm is not None and algorithm.group(1) == "id-ecPublicKey":
        key_type = "ec"
    if key_type is None or bits is None:
        found = algorithm.group(1) if algorithm else "unknown"
        raise PkiError(f"the request's key is {found}; only EC and RSA keys are signed", csr)
    least = MIN_RSA_BITS if key_type == "rsa" else MIN_EC_BITS
    if int(bits.group(1)) < least:
        raise PkiError(f"the request's {key_type.upper()} key has {bits.group(1)} bits, under {least}; refusing", csr)
    return Request(csr, subject[3:], key_type, int(bits.group(1)))


def _serial() -> str:
    # RFC 5280: positive, at most 20 octets; 159 random bits so that no serial is guessable or repeated.
    return "0x" + format(secrets.randbits(159) | 1 << 158, "x")


def _describe(path: Path) -> Issued:
    text = _openssl(
        "x509", "-noout", "-in", str(path), "-serial", "-enddate", "-subject", "-nameopt", "RFC2253",
        what="read the certificate back", path=path,
    )  # fmt: skip
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    return Issued(path, fields["subject"].removeprefix("CN="), fields["serial"], fields["notAfter"])


class CertificateAuthority:
    """The deployment's CA: ``ca.key`` (mode 0600) and ``ca.pem`` in one folder. Keep it off the network."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.key = folder / CA_KEY
        self.cert = folder / CA_CERT

    @classmethod
    def create(cls, folder: Path, name: str, *, days: int, key_type: KeyType = "ec") -> CertificateAuthority:
        """Make a new CA in ``folder``; refused if one is there, since its huts' certificates depend on it."""
        ca = cls(folder)
        for path in (ca.key, ca.cert):
            if path.exists():
                raise PkiError(
                    "a CA is already here, and every certificate it issued depends on it; "
                    "choose another folder for a new CA",
                    path,
                )
        subject = _subject_name(name)
        _check_days(days)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        ensure_private_key(ca.key, key_type)
        extensions = (
            "basicConstraints = critical, CA:TRUE, pathlen:0\n"
            "keyUsage = critical, keyCertSign, cRLSign\n"
            "subjectKeyIdentifier = hash\n"
        )
        with tempfile.TemporaryDirectory(prefix="healthhut-pki-") as work:
            pem = _openssl_bytes(
                "req", "-x509", "-new", "-utf8", "-sha256", "-config", _minimal_config(work, extensions),
                "-key", str(ca.key), "-subj", subject, "-days", str(days), "-set_serial", _serial(),
                what="make the CA certificate", path=ca.cert,
            )  # fmt: skip
        _write_file(ca.cert, pem, mode=0o644, replace=False)
        return ca

    def _check(self) -> None:
        if not self.cert.exists():
            raise PkiError("no CA certificate here (make the CA first)", self.cert)
        check_private_key(self.key)

    def _sign(self, csr: Path, out: Path, extensions: str, days: int) -> Issued:
        _check_days(days)
        self._check()
        with tempfile.TemporaryDirectory(prefix="healthhut-pki-") as work:
            extfile = Path(work) / "ext.cnf"
            # The request's own extensions are never copied: what a certificate may do is decided here.
            extfile.write_text(f"[leaf]\n{extensions}{_KEY_IDS}")
            pem = _openssl_bytes(
                "x509", "-req", "-sha256", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                "-set_serial", _serial(), "-days", str(days), "-extfile", str(extfile), "-extensions", "leaf",
                what="sign the request", path=csr,
            )  # fmt: skip
        _write_file(out, pem, mode=0o644, replace=True)
        issued = _describe(out)
        kept = self.folder / ISSUED
        kept.mkdir(mode=0o700, exist_ok=True)
        _write_file(kept / f"{issued.serial}.pem", pem, mode=0o644, replace=True)
        return issued

    # -- revocation ------------------------------------------------------------------------------------
    def _openssl_ca(self, *args: str, what: str, path: Path) -> bytes:
        """``openssl ca`` with this CA's key and certificate, and its database (``index.txt`` of revoked
        serials, ``crlnumber``) in the CA's folder. openssl runs there, on relative names, so that no
        folder name can be read as config syntax."""
        for name, initial in ((_INDEX, ""), ("crlnumber", "01\n")):
            if not (self.folder / name).exists():
                _write_file(self.folder / name, initial.encode(), mode=0o600, replace=False)
        with tempfile.TemporaryDirectory(prefix="healthhut-pki-") as work:
            config = Path(work) / "ca.cnf"
            config.write_text(
                f"[ca]\ndefault_ca = deployment\n[deployment]\ndatabase = {_INDEX}\ncrlnumber = crlnumber\n"
                "default_md = sha256\nunique_subject = no\n"
            )
            return _openssl_bytes(
                "ca", "-config", str(config), "-keyfile", CA_KEY, "-cert", CA_CERT, *args,
                what=what, path=path, cwd=self.folder,
            )  # fmt: skip

    def issued_to(self, hut_id: str) -> list[Path]:
        """The certificates this CA issued for ``hut_id`` (its copies in ``issued/``)."""
        found = []
        for path in sorted((self.folder / ISSUED).glob("*.pem")):
            if _describe(path).common_name == hut_id:
                found.append(path)
        return found

    def revoked_serials(self) -> set[str]:
        index = self.folder / _INDEX
        if not index.exists():
            return set()
        return {line.split("\t")[3].upper() for line in index.read_text().splitlines() if line.startswith("R\t")}

    def revoke(self, cert: Path, reason: str = "unspecified") -> Issued:
        """Revoke ``cert`` (it must be one this CA issued) and write the CA's revocation list anew."""
        self._check()
        if reason not in REVOCATION_REASONS:
            raise PkiError(f"{reason!r} is not a revocation reason ({', '.join(REVOCATION_REASONS)})")
        _openssl(
            "verify", "-no_check_time", "-CAfile", str(self.cert), str(cert),
            what="find that this CA issued the certificate", path=cert,
        )  # fmt: skip
        issued = _describe(cert)
        if issued.serial.upper() not in self.revoked_serials():
            self._openssl_ca(
                "-revoke", str(cert.resolve()), "-crl_reason", reason, what="revoke the certificate", path=cert
            )
        self.write_crl(self.folder / CRL)
        return issued

    def write_crl(self, out: Path, *, days: int = CRL_DAYS) -> Path:
        """The revocation list, signed, to ``out``: every certificate revoked so far (none at first)."""
        self._check()
        _check_days(days)
        pem = self._openssl_ca("-gencrl", "-crldays", str(days), what="write the revocation list", path=out)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_file(out, pem, mode=0o644, replace=True)
        return out

    def sign_hut(self, csr: Path, out: Path, *, days: int) -> Issued:
        """Issue a hut's client certificate for the request in ``csr``, if its CN is a hut id."""
        request = read_request(csr)
        try:
            check_hut_name(request.common_name)
        except ValueError as exc:
            raise PkiError(f"the request is for CN={request.common_name}: {exc}; refusing to sign it", csr) from None
        return self._sign(csr, out, _CLIENT + _key_usage(request.key_type), days)

    def issue_service(self, name: str, folder: Path, *, days: int, force: bool = False) -> tuple[Path, Issued]:
        """A service's key (made here, 0600) and client certificate: ``NAME.key``, ``NAME.pem``."""
        if name not in SERVICE_NAMES:
            raise PkiError(f"{name!r} is not a service the broker ACL names ({', '.join(sorted(SERVICE_NAMES))})")
        key = folder / f"{name}.key"
        return key, self._issue_with_key(key, folder / f"{name}.pem", name, _CLIENT, days, force)

    def issue_server(
        self, name: str, folder: Path, *, ips: Sequence[str] = (), dns: Sequence[str] = (), days: int, force: bool
    ) -> tuple[Path, Issued]:
        """The broker's key (made here, 0600) and server certificate, ``server.key`` and ``server.pem``, valid
        for ``name`` and every DNS name and IP address given."""
        names: list[str] = []
        for entry in (name, *dns, *ips):
            try:
                names.append(f"IP:{ipaddress.ip_address(entry)}")
            except ValueError:
                if entry in ips:
                    raise PkiError(f"{entry!r} is not an IP address") from None
                if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", entry):
                    raise PkiError(f"{entry!r} is not a DNS name") from None
                names.append(f"DNS:{entry}")
        extensions = _SERVER + f"subjectAltName = {', '.join(dict.fromkeys(names))}\n"
        key = folder / "server.key"
        issued = self._issue_with_key(key, folder / "server.pem", name, extensions, days, force)
        # The broker checks clients against the CA's revocation list (crlfile), which must exist.
        self.write_crl(folder / CRL)
        return key, issued

    def _issue_with_key(self, key: Path, out: Path, name: str, extensions: str, days: int, force: bool) -> Issued:
        self._check()
        _check_days(days)
        folder = key.parent
        folder.mkdir(parents=True, exist_ok=True)
        if key.exists() and not force:
            raise PkiError("already exists; refusing to overwrite it without --force", key)
        with tempfile.TemporaryDirectory(prefix="healthhut-pki-") as work:
            # The new key is made aside and put in place only once its certificate is issued.
            new_key, csr = Path(work) / "new.key", Path(work) / "new.csr"
            ensure_private_key(new_key)
            make_request(new_key, csr, name)
            issued = self._sign(csr, Path(work) / "new.pem", extensions + _key_usage("ec"), days)
            _write_file(key, new_key.read_bytes(), mode=0o600, replace=force)
            _write_file(out, issued.path.read_bytes(), mode=0o644, replace=True)
        if folder.resolve() != self.folder.resolve():
            shutil.copyfile(self.cert, folder / CA_CERT)
        return Issued(out, issued.common_name, issued.serial, issued.not_after)


def _key_usage(key_type: KeyType) -> str:
    # RSA keys may also carry TLS 1.2's RSA key exchange; an EC key only ever signs.
    usage = "digitalSignature, keyEncipherment" if key_type == "rsa" else "digitalSignature"
    return f"keyUsage = critical, {usage}\n"


def _check_days(days: int) -> None:
    if not 1 <= days <= 36500:
        raise PkiError(f"a certificate is valid for 1 to 36500 days, not {days}")
