"""scripts/install into a temporary root (--prefix): the tree it lays out, what it would run, and reruns."""

from __future__ import annotations

import subprocess
from pathlib import Path

from healthhut.collector.config import load_config as load_collector_config
from healthhut.gateway.config import load_config as load_gateway_config
from healthhut.gateway.provision import DEFAULT_FOLDER
from healthhut.protocol.configfile import TlsConfig, is_loopback
from tests.conftest import ROOT
from tests.ops.conftest import BASE_SYSTEM, INSTALL, Installed, borrow_dependencies, run_install


def tree(root: Path) -> set[str]:
    """Every path under root, except the virtual environment's own contents below bin/."""
    paths = set()
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        venv = "opt/healthhut/venv/"
        if relative.startswith(venv) and not relative.startswith(venv + "bin/hut-"):
            continue
        paths.add(relative)
    return paths


def would_run(output: str) -> list[str]:
    return [line.removeprefix("install: would run: ") for line in output.splitlines() if "would run:" in line]


def test_both_roles_lay_out_configs_venv_units_and_modules(installed: Installed) -> None:
    assert tree(installed.root) - BASE_SYSTEM == {
        "etc",
        "etc/healthhut",
        "etc/healthhut/gateway.toml",
        "etc/healthhut/collector.toml",
        "etc/healthhut/tls",
        "etc/modules-load.d",
        "etc/modules-load.d/healthhut.conf",
        "etc/systemd",
        "etc/systemd/system",
        "etc/systemd/system/hut-gateway.service",
        "etc/systemd/system/hut-collector.service",
        "opt",
        "opt/healthhut",
        "opt/healthhut/venv",
        "opt/healthhut/venv/bin/hut-gateway",
        "opt/healthhut/venv/bin/hut-collector",
        "opt/healthhut/venv/bin/hut-sim",
    }
    etc = installed.root / "etc"
    for name in ("gateway", "collector"):
        assert (etc / f"healthhut/{name}.toml").read_bytes() == (ROOT / name / f"{name}.example.toml").read_bytes()
        assert (etc / f"healthhut/{name}.toml").stat().st_mode & 0o777 == 0o640
        unit = etc / f"systemd/system/hut-{name}.service"
        assert unit.read_bytes() == (ROOT / "systemd" / f"hut-{name}.service").read_bytes()
    assert (etc / "healthhut").stat().st_mode & 0o777 == 0o750
    assert (etc / "healthhut/tls").stat().st_mode & 0o777 == 0o750
    modules = (etc / "modules-load.d/healthhut.conf").read_text().splitlines()
    assert [line for line in modules if not line.startswith("#")] == ["usbserial", "cdc_acm"]


def test_prefix_prints_what_would_change_the_machine(installed: Installed) -> None:
    commands = [line for line in would_run(installed.output) if not line.startswith(("apt-get", "groupadd"))]
    assert commands == [
        r"useradd --system --user-group --home-dir /var/lib/healthhut --no-create-home --shell /usr/sbin/nologin"
        r" --comment health\ hut\ services healthhut",
        r"usermod --append --groups dialout\,bluetooth\,input healthhut",
        "modprobe --all usbserial cdc_acm",
        "systemctl daemon-reload",
        "systemctl enable hut-gateway.service hut-collector.service",
    ]


def test_every_group_the_gateway_unit_names_exists_and_holds_the_user(installed: Installed) -> None:
    """systemd will not start a unit whose SupplementaryGroups= names a missing group (status 216/GROUP)."""
    (line,) = [x for x in (ROOT / "systemd/hut-gateway.service").read_text().splitlines() if x.startswith("Supp")]
    wanted = line.split("=", 1)[1].split()
    present = {
        name
        for name in wanted
        if subprocess.run(["getent", "group", name], check=False, capture_output=True).returncode == 0
    }
    commands = would_run(installed.output)
    assert [c for c in commands if c.startswith("groupadd")] == [
        f"groupadd --system {g}" for g in wanted if g not in present
    ]
    (usermod,) = [c for c in commands if c.startswith("usermod")]
    assert usermod.split()[3].split("\\,") == wanted


def test_installed_programs_accept_the_installed_configs(installed: Installed) -> None:
    borrow_dependencies(installed)
    for name in ("gateway", "collector"):
        config = installed.root / f"etc/healthhut/{name}.toml"
        result = subprocess.run(
            [installed.venv_bin(f"hut-{name}"), "check-config", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stderr) == (0, ""), result.stdout
        assert result.stdout.startswith(f"{config}: OK")


def test_installed_configs_use_mutual_tls_with_the_provisioned_files(installed: Installed) -> None:
    # Secure by default: what the install puts in place talks TLS, with a client certificate, to the broker,
    # using the files "hut-gateway provision" and "hut-collector ca client" make (README: Provisioning a hut).
    folder = "/etc/healthhut/tls"
    gateway = load_gateway_config(installed.root / "etc/healthhut/gateway.toml")
    collector = load_collector_config(installed.root / "etc/healthhut/collector.toml")
    assert (gateway.mqtt.tls, gateway.mqtt.port, gateway.mqtt.insecure_plaintext) == (
        TlsConfig(ca_file=f"{folder}/ca.pem", cert_file=f"{folder}/hut.pem", key_file=f"{folder}/hut.key"),
        8883,
        False,
    )
    assert (collector.mqtt.tls, collector.mqtt.port, collector.mqtt.insecure_plaintext) == (
        TlsConfig(ca_file=f"{folder}/ca.pem", cert_file=f"{folder}/collector.pem", key_file=f"{folder}/collector.key"),
        8883,
        False,
    )
    # The folder "hut-gateway provision --hut-id" writes to, as the README says.
    assert Path(folder) == DEFAULT_FOLDER
    assert not is_loopback(gateway.mqtt.host) and not is_loopback(collector.mqtt.host)


def test_installed_configs_without_tls_are_refused_with_file_line_and_key(installed: Installed, tmp_path: Path) -> None:
    borrow_dependencies(installed)
    for name in ("gateway", "collector"):
        text = (installed.root / f"etc/healthhut/{name}.toml").read_text()
        start = text.index("\n[mqtt.tls]\n")
        end = text.index("\n\n", start + 1)
        plaintext = tmp_path / f"{name}.toml"
        plaintext.write_text(text[:start] + text[end:])
        host_line = next(n for n, line in enumerate(text.split("\n"), 1) if line.startswith("host = "))
        result = subprocess.run(
            [installed.venv_bin(f"hut-{name}"), "check-config", str(plaintext)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr.startswith(
            f"hut-{name}: config error: {plaintext}:{host_line}: [mqtt.host] the broker 'broker.example.org' is "
            "not on this machine and there is no [mqtt.tls]: plaintext MQTT would carry readings unencrypted;"
        ), result.stderr
        # Said explicitly, it is allowed (a lab bench); the doctor still fails it.
        plaintext.write_text(plaintext.read_text().replace("[mqtt]\n", "[mqtt]\ninsecure_plaintext = true\n", 1))
        allowed = subprocess.run(
            [installed.venv_bin(f"hut-{name}"), "check-config", str(plaintext)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (allowed.returncode, allowed.stderr) == (0, ""), allowed.stdout


def test_rerun_keeps_configs_locks_keys_and_collector_alone_skips_gateway_parts(wheel: Path, tmp_path: Path) -> None:
    first = run_install(wheel, "--role", "collector", "--prefix", str(tmp_path))
    assert (first.returncode, first.stderr) == (0, ""), first.stdout
    assert {p for p in tree(tmp_path) if p.startswith("etc/")} == {
        "etc/healthhut",
        "etc/healthhut/collector.toml",
        "etc/healthhut/tls",
        "etc/systemd",
        "etc/systemd/system",
        "etc/systemd/system/hut-collector.service",
    }
    assert not any(line.startswith(("usermod", "modprobe")) for line in would_run(first.stdout))
    assert "systemctl enable hut-collector.service" in would_run(first.stdout)

    config = tmp_path / "etc/healthhut/collector.toml"
    config.write_text("# edited by the operator\n")
    key = tmp_path / "etc/healthhut/collector.key"
    key.write_text("secret\n")
    key.chmod(0o644)
    second = run_install(wheel, "--role", "collector", "--prefix", str(tmp_path))
    assert (second.returncode, second.stderr) == (0, ""), second.stdout
    assert config.read_text() == "# edited by the operator\n"
    assert "install: keeping /etc/healthhut/collector.toml" in second.stdout.splitlines()
    assert key.stat().st_mode & 0o777 == 0o600
    assert "chown healthhut:healthhut /etc/healthhut/collector.key" in would_run(second.stdout)
    tls_key = tmp_path / "etc/healthhut/tls/collector.key"
    tls_key.write_text("secret\n")
    tls_key.chmod(0o644)
    third = run_install(wheel, "--role", "collector", "--prefix", str(tmp_path))
    assert (third.returncode, third.stderr) == (0, ""), third.stdout
    assert tls_key.stat().st_mode & 0o777 == 0o600
    assert "chown healthhut:healthhut /etc/healthhut/tls/collector.key" in would_run(third.stdout)


def test_help_and_a_wrong_role() -> None:
    shown = subprocess.run([INSTALL, "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0
    assert "--prefix DIR" in shown.stdout
    assert "examples:\n  sudo scripts/install --role gateway\n" in shown.stdout
    wrong = subprocess.run(
        [INSTALL, "--role", "hub", "--prefix", "/nonexistent"], capture_output=True, text=True, check=False
    )
    assert wrong.returncode == 1
    assert wrong.stderr == "install: error: --role must be gateway, collector or both, not 'hub'\n"
    assert not Path("/nonexistent").exists()
