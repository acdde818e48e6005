"""The wheel holds every module: build it, install it into a fresh venv, import everything from there.

Runtime dependencies come from the test venv's site-packages through a path entry (no download), but
healthhut itself must come from the wheel, so a subpackage missing from it fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

FOLDERS = {
    "protocol": "healthhut.protocol",
    "drivers": "healthhut.drivers",
    "gateway": "healthhut.gateway",
    "collector": "healthhut.collector",
    "firmware-sim": "healthhut.firmware_sim",
    "devstack": "healthhut.devstack",
}


def source_modules() -> list[str]:
    modules = []
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules.append(".".join((package, *parts)))
    return modules


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a clean copy: setuptools reuses build/lib, where a stale module could hide a missing one.
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
    (wheel,) = tmp.glob("healthhut-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, capture_output=True)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies only; a plain path line does not run the dev venv's editable-install hook.
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python.parent


def test_every_module_imports_from_the_wheel(wheel_venv: Path, tmp_path: Path) -> None:
    modules = source_modules()
    assert len(modules) > 20
    script = (
        "import importlib, json, sys\n"
        "bad = {}\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        module = importlib.import_module(name)\n"
        "        if '/site-packages/healthhut/' not in (module.__file__ or ''):\n"
        "            bad[name] = 'imported from ' + str(module.__file__)\n"
        "    except Exception as exc:\n"
        "        bad[name] = repr(exc)\n"
        "print(json.dumps(bad))\n"
    )
    result = subprocess.run(
        [wheel_venv / "python", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == {}


def test_wheel_ships_data_files_entry_points_and_scripts(wheel_venv: Path, tmp_path: Path) -> None:
    check = (
        "from importlib.resources import files\n"
        "from healthhut.drivers import get_driver\n"
        "assert get_driver('contec-cms50').name == 'contec-cms50'\n"
        "for package in ('protocol', 'drivers', 'gateway', 'collector', 'firmware_sim', 'devstack'):\n"
        "    assert files('healthhut.' + package).joinpath('py.typed').is_file(), package\n"
        "assert files('healthhut.gateway').joinpath('gateway.example.toml').is_file()\n"
        "assert files('healthhut.collector').joinpath('collector.example.toml').is_file()\n"
    )
    subprocess.run([wheel_venv / "python", "-c", check], cwd=tmp_path, check=True, capture_output=True)
    for script in ("hut-gateway", "hut-collector", "hut-sim"):
        result = subprocess.run([wheel_venv / script, "--help"], capture_output=True, text=True, check=True)
        assert "examples:" in result.stdout, script
