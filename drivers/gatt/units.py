"""Exact unit conversion into the vocabulary's units (DESIGN.md), in decimal arithmetic, rounded half-even to
6 places: finer than any device, and no 36.99999999999999 (98.6 °F) slips under an alert threshold."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Context, Decimal

from healthhut.drivers.gatt.sfloat import MedFloat
from healthhut.protocol import Flag, Quantity
from healthhut.protocol.vocabulary import KG_PER_LB, MG_DL_PER_MMOL_L, MMHG_PER_KPA

# FLOAT reaches 10^127; the context must hold such a number and its decimals without rounding.
_CONTEXT = Context(prec=200, rounding=ROUND_HALF_EVEN)
_PLACES = Decimal("0.000001")

Convert = Callable[[Decimal], Decimal]


def _rounded(value: Decimal) -> Decimal:
    return _CONTEXT.quantize(value, _PLACES)


def kpa_to_mmhg(kpa: Decimal) -> Decimal:
    return _rounded(_CONTEXT.multiply(kpa, Decimal(str(MMHG_PER_KPA))))


def fahrenheit_to_celsius(fahrenheit: Decimal) -> Decimal:
    return _rounded(_CONTEXT.divide(_CONTEXT.multiply(_CONTEXT.subtract(fahrenheit, Decimal(32)), 5), 9))


def lb_to_kg(lb: Decimal) -> Decimal:
    return _rounded(_CONTEXT.multiply(lb, Decimal(str(KG_PER_LB))))


def inch_to_m(inch: Decimal) -> Decimal:
    return _rounded(_CONTEXT.multiply(inch, Decimal("0.0254")))


def kg_per_l_to_mmol_per_l(kg_per_l: Decimal) -> Decimal:
    """kg/L → mg/dL (× 10^5) → mmol/L (÷ 18.016, DESIGN.md)."""
    mg_per_dl = _CONTEXT.multiply(kg_per_l, Decimal(100_000))
    return _rounded(_CONTEXT.divide(mg_per_dl, Decimal(str(MG_DL_PER_MMOL_L))))


def mol_per_l_to_mmol_per_l(mol_per_l: Decimal) -> Decimal:
    return _rounded(_CONTEXT.multiply(mol_per_l, Decimal(1000)))


def put(
    values: dict[str, Quantity],
    flags: set[Flag],
    name: str,
    value: MedFloat | None,
    unit: str,
    convert: Convert | None = None,
) -> None:
    """Add ``value`` as ``name``; a special value is left out and flagged VALUE_UNAVAILABLE."""
    if value is None:
        return
    exact = value.decimal()
    if exact is None:
        flags.add(Flag.VALUE_UNAVAILABLE)
        return
    values[name] = Quantity(float(exact if convert is None else convert(exact)), unit)
