"""``hut-gateway doctor`` against real parts: a real broker, a real pty, a real (or damaged) spool file."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthhut.devstack import LocalStack, free_port
from healthhut.firmware_sim.links import PtyLink
from healthhut.gateway import cli
from healthhut.gateway.doctor import MIN_FREE_BYTES
from healthhut.protocol.pki import CertificateAuthority, ensure_private_key, make_request
from healthhut.protocol.pseudonym import generate_key_file
from tests.gateway.test_tls import shipped_listener


def write_config(
    tmp_path: Path, port: int, devices: str, identity: str = "", *, mqtt: str = "", state_dir: Path | None = None
) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'hut_id = "hut-doc"\nstate_dir = "{state_dir or tmp_path / "state"}"\n[mqtt]\nport = {port}\n{mqtt}'
        f"{identity}{devices}"
    )
    return path


def lines(output: str) -> dict[str, tuple[str, str]]:
    """check name -> (verdict, detail)"""
    found = {}
    for line in output.splitlines()[1:-1]:
        verdict, rest = line.split(maxsplit=1)
        check, detail = rest.split("  ", 1)
        found[check.strip()] = (verdict, detail.strip())
    return found


def test_a_healthy_hut_passes(stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "pseudonym.key"
    generate_key_file(key)
    link = PtyLink(tmp_path / "ox")
    link.open()
    try:
        devices = f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp_path / "ox"}"\n'
        config = write_config(tmp_path, stack.mosquitto.port, devices, f'[identity]\nkey_file = "{key}"\n')
        code = cli.main(["doctor", "--config", str(config)])
    finally:
        link.close()
    out = capsys.readouterr().out
    found = lines(out)
    assert code == 0, out
    assert found["broker"] == ("PASS", f"connected to 127.0.0.1:{stack.mosquitto.port}")
    assert found["device ox-1"][0] == "PASS" and found["pseudonym key"][0] == "PASS"
    assert found["state folder"][0] == "PASS" and found["spool"][0] == "PASS" and found["free disk"][0] == "PASS"
    assert found["clock"][0] in ("PASS", "WARN")  # this machine's clock may not be synchronised
    assert "bluetooth" not in found  # no BLE device configured: nothing to check


def test_each_broken_part_is_a_failure_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "pseudonym.key"
    key.write_text("ab" * 32)
    key.chmod(0o644)
    spool = tmp_path / "state" / "spool.sqlite"
    spool.parent.mkdir(parents=True)
    spool.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)  # a header and then nothing sane
    devices = (
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp_path / "unplugged"}"\n'
        '[[devices]]\ndriver = "ble-thermometer"\nname = "th-1"\n'
    )
    config = write_config(tmp_path, free_port(), devices, f'[identity]\nkey_file = "{key}"\n')
    code = cli.main(["doctor", "--config", str(config)])
    out = capsys.readouterr().out
    found = lines(out)
    assert code == 1, out
    assert found["broker"][0] == "FAIL" and "check the address" in found["broker"][1]
    assert found["device ox-1"] == ("FAIL", f"{tmp_path / 'unplugged'} does not exist: is the contec-cms50 plugged in?")
    assert found["spool"][0] == "FAIL" and "move it aside" in found["spool"][1]
    assert found["pseudonym key"][0] == "FAIL" and "owner only" in found["pseudonym key"][1]
    assert found["bluetooth"][0] == "FAIL"
    assert out.strip().endswith("warning(s)") and out.splitlines()[-1].startswith("5 failure(s)")
    assert "ab" * 32 not in out  # never the key


def test_an_input_device_is_opened_read_only_as_the_gateway_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An input event device is read, never written: doctor opens it read-only, as the evdev transport does,
    # so a scanner the gateway can use passes where a serial port's read-write open would fail. The tests
    # run as root, whom no permission bit stops, so the device sits on a read-only bind mount instead.
    source, mounted = tmp_path / "dev", tmp_path / "ro"
    source.mkdir()
    mounted.mkdir()
    # (A regular file: a read-only mount lets device files and FIFOs be opened for writing.)
    (source / "scanner-event-kbd").write_bytes(b"")
    subprocess.run(["mount", "--bind", str(source), str(mounted)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True)
        scanner, port = mounted / "scanner-event-kbd", mounted / "ttyUSB0"
        with pytest.raises(OSError):
            port.touch()  # read-only indeed
        devices = (
            f'[[devices]]\ndriver = "hid-scanner"\nname = "hid-1"\npath = "{scanner}"\n'
            f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{scanner}"\n'
        )
        code = cli.main(["doctor", "--config", str(write_config(tmp_path, free_port(), devices))])
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    found = lines(capsys.readouterr().out)
    assert found["device hid-1"] == ("PASS", f"{scanner} opens")
    assert found["device ox-1"][0] == "FAIL" and "Read-only file system" in found["device ox-1"][1]
    assert code == 1


# -- the broker over mutual TLS, against real mosquitto with the shipped listener and ACL --------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment's CA, the broker's certificate and hut-doc's, made as an operator makes them; and in
    other/ a second CA, with a hut-doc certificate of its own (a hut provisioned against the wrong CA)."""
    folder = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create(folder, "healthhut test CA", days=2)
    ca.issue_server("localhost", folder, ips=["127.0.0.1"], days=2, force=False)
    other = CertificateAuthority.create(folder / "other", "another CA", days=2)
    for where, authority in ((folder, ca), (folder / "other", other)):
        ensure_private_key(where / "hut.key")
        make_request(where / "hut.key", where / "hut.csr", "hut-doc")
        authority.sign_hut(where / "hut.csr", where / "hut.pem", days=2)
    return folder


@pytest.fixture(scope="module")
def tls_broker(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    listener = shipped_listener(port, pki)
    with LocalStack(tmp_path_factory.mktemp("broker"), influxd=False, victoria=False, mosquitto_config=listener):
        yield port


def tls_section(ca: Path, cert: Path, key: Path) -> str:
    return f'[mqtt.tls]\nca_file = "{ca}"\ncert_file = "{cert}"\nkey_file = "{key}"\n'


def doctor(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, tuple[str, str]]]:
    code = cli.main(["doctor", "--config", str(config)])
    return code, lines(capsys.readouterr().out)


def test_the_broker_over_mutual_tls_passes(
    pki: Path, tls_broker: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mqtt = 'host = "127.0.0.1"\n' + tls_section(pki / "ca.pem", pki / "hut.pem", pki / "hut.key")
    code, found = doctor(write_config(tmp_path, tls_broker, "", mqtt=mqtt), capsys)
    assert found["broker"] == ("PASS", f"connected to 127.0.0.1:{tls_broker} over TLS")
    assert found["broker security"] == ("PASS", "mutual TLS (a client certificate and the deployment CA)")
    assert code == 0, found


@pytest.mark.parametrize(
    ("case", "files", "why"),
    [
        # The hut trusts another CA: the broker's certificate does not verify.
        ("the wrong CA", ("other/ca.pem", "hut.pem", "hut.key"), "the broker's certificate does not verify against"),
        # The broker refuses a hut certificate from another CA at the handshake.
        (
            "a certificate of another CA",
            ("ca.pem", "other/hut.pem", "other/hut.key"),
            "the broker refused this hut's certificate",
        ),
        # The key is not the certificate's.
        ("another key", ("ca.pem", "hut.pem", "other/hut.key"), "cannot use the files of [mqtt.tls]"),
    ],
)
def test_the_broker_over_tls_fails_with_what_was_wrong(
    pki: Path,
    tls_broker: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    files: tuple[str, str, str],
    why: str,
) -> None:
    ca, cert, key = (pki / name for name in files)
    mqtt = 'host = "127.0.0.1"\n' + tls_section(ca, cert, key)
    code, found = doctor(write_config(tmp_path, tls_broker, "", mqtt=mqtt), capsys)
    assert code == 1, found
    verdict, detail = found["broker"]
    assert verdict == "FAIL" and why in detail, (case, detail)
    assert detail.startswith(f"cannot connect to 127.0.0.1:{tls_broker} over TLS: ") or "cannot use" in detail
    assert found["broker security"][0] == "PASS"  # it is set up right; it is the files that are wrong


def test_a_missing_certificate_is_named_with_what_to_do(
    pki: Path, tls_broker: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What a hut just installed and not yet provisioned looks like.
    mqtt = 'host = "127.0.0.1"\n' + tls_section(pki / "ca.pem", tmp_path / "tls/hut.pem", pki / "hut.key")
    code, found = doctor(write_config(tmp_path, tls_broker, "", mqtt=mqtt), capsys)
    assert code == 1
    assert found["broker"] == (
        "FAIL",
        f"cannot connect to 127.0.0.1:{tls_broker} over TLS: [mqtt.tls] cert_file {tmp_path / 'tls/hut.pem'} does "
        "not exist: put this hut's certificate there (hut-gateway provision, then the certificate the CA signed)",
    )


def test_plaintext_to_another_machine_fails_even_when_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The config lets it run (a lab bench); the doctor still says it is not how a hut may run.
    mqtt = 'host = "broker.invalid"\ninsecure_plaintext = true\n'
    code, found = doctor(write_config(tmp_path, free_port(), "", mqtt=mqtt), capsys)
    assert code == 1
    verdict, detail = found["broker security"]
    assert verdict == "FAIL" and detail.startswith("plaintext to broker.invalid, another machine"), detail
    assert "configure [mqtt.tls]" in detail


def test_plaintext_on_loopback_passes_security(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, found = doctor(write_config(tmp_path, stack.mosquitto.port, ""), capsys)
    assert found["broker security"] == ("PASS", "plaintext to 127.0.0.1, which is this machine")
    assert code == 0, found


# -- the disk and the state folder, on real small filesystems ------------------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real filesystem of its own (as tests/faults does for a full disk). Needs root, as CI has."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.mark.parametrize(
    ("size_mb", "quota_mb", "verdict", "words"),
    [
        (8, 512, "FAIL", "too little to keep readings; free some space"),
        (100, 512, "WARN", "the spool will evict waveforms before reaching its quota"),
        (100, 50, "PASS", None),
    ],
)
def test_free_disk(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    stack: LocalStack,
    size_mb: int,
    quota_mb: int,
    verdict: str,
    words: str | None,
) -> None:
    assert (size_mb * 2**20 < MIN_FREE_BYTES) == (verdict == "FAIL")
    with tmpfs(tmp_path / "disk", f"size={size_mb}m") as disk:
        config = write_config(tmp_path, stack.mosquitto.port, f"[spool]\nquota_mb = {quota_mb}\n", state_dir=disk)
        code, found = doctor(config, capsys)
    found_verdict, detail = found["free disk"]
    assert found_verdict == verdict, detail
    assert detail.startswith(f"{size_mb} MiB free at {disk}; spool quota {quota_mb} MiB")
    assert detail.endswith(f": {words}") if words else ":" not in detail.split("MiB", 1)[1]
    assert code == (1 if verdict == "FAIL" else 0)


def test_an_unwritable_state_folder_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stack: LocalStack
) -> None:
    # Root passes every permission bit, so the folder is on a read-only filesystem instead.
    with tmpfs(tmp_path / "ro", "size=1m,ro") as readonly:
        code, found = doctor(write_config(tmp_path, stack.mosquitto.port, "", state_dir=readonly), capsys)
    assert found["state folder"] == ("FAIL", f"{readonly}: cannot write (Read-only file system); fix its owner or mode")
    assert code == 1


def test_a_config_error_exits_2_naming_file_line_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    device = '[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "/dev/x"\nreport_intervall_s = 1\n'
    config = write_config(tmp_path, 1883, device)
    code = cli.main(["doctor", "--config", str(config)])
    captured = capsys.readouterr()
    assert (code, captured.out) == (2, "")
    assert (
        captured.err
        == f"hut-gateway: config error: {config}:9: [devices[0].report_intervall_s] unknown key (check its spelling)\n"
    )
