"""A tree installed by scripts/install --prefix, shared by the unit and the install tests.

The package comes from a wheel built from a clean copy of this checkout (no download: --no-deps), so
the tree holds the real console scripts that the units' ExecStart= names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

INSTALL = ROOT / "scripts" / "install"


@dataclass(frozen=True)
class Installed:
    root: Path
    output: str

    def venv_bin(self, name: str) -> Path:
        return self.root / "opt/healthhut/venv/bin" / name


def run_install(wheel: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), "--package", str(wheel), "--pip-args", "--no-deps --no-index", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # From a clean copy: setuptools reuses build/lib, where a stale module could hide a missing one.
    source = tmp / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = tmp.glob("healthhut-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("root")
    result = run_install(wheel, "--role", "both", "--prefix", str(root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    # What the base system brings and a unit names: kill(1) for ExecReload= (procps, on every Debian).
    # A copy, since systemd-analyze --root resolves an absolute symlink inside the root.
    (root / "bin").mkdir()
    shutil.copy2(shutil.which("kill") or "/bin/kill", root / "bin" / "kill")
    return Installed(root, result.stdout)


BASE_SYSTEM = {"bin", "bin/kill"}


def borrow_dependencies(installed: Installed) -> None:
    """Let the installed venv import the test venv's dependencies (a path line, not the editable hook)."""
    python = installed.venv_bin("python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
