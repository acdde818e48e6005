"""Maps each top-level folder into the ``healthhut`` namespace (DESIGN.md, Layout).

pyproject.toml holds all metadata; only the package list lives here, because it is derived from the
folders so that a new subpackage cannot be forgotten.
"""

from setuptools import find_packages, setup

PACKAGE_DIRS = {
    "healthhut.protocol": "protocol",
    "healthhut.drivers": "drivers",
    "healthhut.gateway": "gateway",
    "healthhut.collector": "collector",
    "healthhut.firmware_sim": "firmware-sim",
    "healthhut.devstack": "devstack",
}

packages = []
for package, folder in PACKAGE_DIRS.items():
    packages.append(package)
    packages.extend(f"{package}.{sub}" for sub in find_packages(folder))

setup(packages=packages, package_dir=PACKAGE_DIRS)
