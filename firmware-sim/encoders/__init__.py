"""Byte-exact device encoders for hut-sim: each one the inverse of a driver's codec."""

# The folder is firmware-sim by design; setup.py installs it as healthhut.firmware_sim.
# ruff: noqa: N999
