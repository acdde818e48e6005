"""scripts/install into a temporary root (--prefix): the tree it lays out, what it would run, and reruns."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
    modules = (etc / "modules-load.d/healthhut.conf").read_text().splitlines()
    assert [line for line in modules if not line.startswith("#")] == ["usbserial", "cdc_acm"]


def test_prefix_prints_what_would_change_the_machine(installed: Installed) -> None:
    commands = [line for line in would_run(installed.output) if not line.startswith(("apt-get", "groupadd"))]
    assert commands == [
        r"useradd --system --user-group --home-dir /var/lib/healthhut --no-create-home --shell /usr/sbin/nologin"
        r" --comment health\ hut\ services healthhut",
        r"usermod --append --groups dialout\,bluetooth healthhut",
        "modprobe --all usbserial cdc_acm",
        "systemctl daemon-reload",
        "systemctl enable hut-gateway.service hut-collector.service",
    ]


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


def test_rerun_keeps_configs_locks_keys_and_collector_alone_skips_gateway_parts(wheel: Path, tmp_path: Path) -> None:
    first = run_install(wheel, "--role", "collector", "--prefix", str(tmp_path))
    assert (first.returncode, first.stderr) == (0, ""), first.stdout
    assert {p for p in tree(tmp_path) if p.startswith("etc/")} == {
        "etc/healthhut",
        "etc/healthhut/collector.toml",
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
