"""Clinical scenarios for hut-sim: one resident's vital signs, applied to whichever device is played."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any

from healthhut.firmware_sim.signals import Rhythm


@dataclass(frozen=True, slots=True)
class Scenario:
    """What the devices measure on the simulated resident. A device takes the values it can measure.

    ``pulse_rate`` is the heart rate too (the simulated resident has no pulse deficit). ``pause_every``
    puts a sinus pause in place of every n-th beat. Units are the vocabulary's: mmHg, /min, %, °C,
    mmol/L, kg, m.
    """

    name: str
    description: str
    systolic: int = 120
    diastolic: int = 80
    pulse_rate: int = 72
    spo2: int = 97
    temperature: float = 36.8
    glucose: float = 5.4
    weight: float = 70.0
    height: float = 1.70
    respiration_rate: int = 15
    rhythm: Rhythm = Rhythm.SINUS
    pause_every: int | None = None

    def __post_init__(self) -> None:
        # Wide enough for faults and extremes; narrow enough that every device's encoder can carry the value.
        checks = (
            ("systolic", self.systolic, 20, 300),
            ("diastolic", self.diastolic, 10, 250),
            ("pulse_rate", self.pulse_rate, 20, 250),
            ("spo2", self.spo2, 50, 100),
            ("temperature", self.temperature, 25.0, 45.0),
            ("glucose", self.glucose, 0.5, 40.0),
            ("weight", self.weight, 1.0, 300.0),
            ("height", self.height, 0.3, 2.5),
            ("respiration_rate", self.respiration_rate, 4, 60),
        )
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ValueError(f"{name} must be in {low}..{high}, not {value}")
        if self.pause_every is not None and self.pause_every < 2:
            raise ValueError(f"pause_every counts beats between pauses and must be at least 2, not {self.pause_every}")
        if self.diastolic >= self.systolic:
            raise ValueError(f"diastolic {self.diastolic} must be below systolic {self.systolic}")

    @property
    def mean_arterial(self) -> int:
        """Diastolic plus a third of the pulse pressure, as oscillometric cuffs report it."""
        return round(self.diastolic + (self.systolic - self.diastolic) / 3)

    @property
    def bmi(self) -> float:
        return self.weight / self.height**2

    def with_values(self, **values: Any) -> Scenario:
        """This scenario with some values set (None leaves a value as it is); ValueError names a bad one."""
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"a scenario has no value {', '.join(sorted(unknown))}")
        changed = {name: value for name, value in values.items() if value is not None}
        return replace(self, **changed) if changed else self


def _table(*scenarios: Scenario) -> Mapping[str, Scenario]:
    return MappingProxyType({scenario.name: scenario for scenario in scenarios})


# Thresholds follow the usual clinical definitions: a hypertensive crisis is 180/120 or more; hypotension
# below 90/60; hypoxaemia a SpO2 below 90 % at rest; fever 38 °C and above; hypoglycaemia below 3.9 mmol/L
# (level 1) and 3.0 (level 2); tachycardia above 100 /min and bradycardia below 50 at rest (adults). The
# companion values are what usually goes with each (a compensating tachycardia in hypotension, a raised
# respiratory rate in hypoxaemia and fever).
SCENARIOS: Mapping[str, Scenario] = _table(
    Scenario("normal-adult", "healthy adult at rest: 120/80, pulse 72, SpO2 97 %, 36.8 °C, glucose 5.4"),
    Scenario("hypertensive-crisis", "blood pressure 185/125 with pulse 96", systolic=185, diastolic=125, pulse_rate=96),
    Scenario(
        "hypotension",
        "blood pressure 85/50 with a compensating pulse of 112",
        systolic=85,
        diastolic=50,
        pulse_rate=112,
        spo2=96,
    ),
    Scenario(
        "hypoxaemia", "SpO2 88 % at rest, pulse 104, breathing 24 /min", spo2=88, pulse_rate=104, respiration_rate=24
    ),
    Scenario(
        "fever",
        "temperature 39.2 °C, pulse 108, breathing 22 /min",
        temperature=39.2,
        pulse_rate=108,
        respiration_rate=22,
    ),
    Scenario(
        "infant-normal",
        "healthy infant (6 months): pulse 140, 88/52, SpO2 98 %, breathing 40 /min, 8 kg",
        systolic=88,
        diastolic=52,
        pulse_rate=140,
        spo2=98,
        temperature=36.9,
        glucose=5.0,
        weight=8.0,
        height=0.67,
        respiration_rate=40,
    ),
    Scenario("hypoglycaemia", "blood glucose 3.2 mmol/L, pulse 98", glucose=3.2, pulse_rate=98),
    Scenario("tachycardia", "regular pulse of 130 at rest", pulse_rate=130),
    Scenario(
        "atrial-fibrillation",
        "atrial fibrillation: irregularly irregular pulse averaging 110, no P waves",
        pulse_rate=110,
        systolic=134,
        diastolic=86,
        rhythm=Rhythm.AF,
    ),
    Scenario("bradycardia", "regular pulse of 42 at rest", pulse_rate=42),
    Scenario(
        "sinus-pauses",
        "sinus rhythm of 64 with a 3 s pause after every 8th beat",
        pulse_rate=64,
        pause_every=8,
    ),
)
DEFAULT_SCENARIO = "normal-adult"


def scenario(name: str) -> Scenario:
    """The scenario called ``name``; KeyError lists the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
