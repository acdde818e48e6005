"""Real protocol Observations for the alerting tests, built the way the gateway builds them."""

from __future__ import annotations

from datetime import UTC, datetime

from healthhut.protocol import (
    Device,
    Finding,
    Flag,
    Kind,
    Observation,
    Quantity,
    Reading,
    Subject,
    observation_from_reading,
)

HUT = "hut-0042"
PSEUDONYM = "9f" * 32
T0 = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
UNITS = {
    "systolic": "mm[Hg]",
    "diastolic": "mm[Hg]",
    "mean_arterial": "mm[Hg]",
    "pulse_rate": "/min",
    "heart_rate": "/min",
    "spo2": "%",
    "perfusion_index": "%",
    "temperature": "Cel",
    "glucose": "mmol/L",
    "rr_intervals": "ms",
}
_seq = iter(range(1, 1_000_000))
SUBJECT = Subject(pseudonym=PSEUDONYM, age_band="70-79")
DEVICE = Device(driver="test-driver", device_id="dev-1")


def observation(
    kind: Kind,
    *,
    flags: frozenset[Flag] = frozenset(),
    fit_for_alerting: bool = True,
    findings: frozenset[Finding] = frozenset(),
    measured_at: datetime = T0,
    subject: Subject | None = SUBJECT,
    device: Device = DEVICE,
    hut_id: str = HUT,
    **values: float | tuple[float, ...],
) -> Observation:
    reading = Reading(
        kind=kind,
        values={name: Quantity(value, UNITS[name]) for name, value in values.items()},
        flags=flags,
        measured_at=measured_at,
    )
    return observation_from_reading(
        reading,
        hut_id=hut_id,
        device=device,
        received_at=measured_at,
        device_seq=next(_seq),
        subject=subject,
        fit_for_alerting=fit_for_alerting,
        findings=findings,
    )
