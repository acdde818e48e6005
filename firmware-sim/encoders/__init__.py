"""Byte-exact device encoders for hut-sim: each one the inverse of a driver's codec."""
