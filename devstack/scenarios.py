"""The demo's clinical scenarios as data: which instruments hut-sim plays and how, who the kiosk signs in, and
what must reach whom. ``healthhut.devstack.demo.run_scenario`` plays one against a running stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from healthhut.drivers import get_driver

# Between a BLE device's spot measurements: more than the collector's 10 s ``confirm_min_gap_s``, so the
# second measurement confirms the first.
SPOT_INTERVAL_S = "12"
ADULT_BAND = "70-79y"


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One instrument: the gateway's driver and device name, how it is reached (a pty the simulator makes, or
    BLE on a fake BlueZ), the ``hut-sim play`` arguments beyond driver and link, and keys its gateway
    ``[[devices]]`` entry needs beyond driver, name and path or address."""

    driver: str
    name: str
    link: Literal["pty", "ble"]
    sim_args: tuple[str, ...]
    gateway: Mapping[str, str | int | float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def keeps_records(self) -> bool:
        """The gateway fetches the device's memory (its driver's ``keeps_records``) and attributes a stored
        record to a resident only by a trusted device time (see :func:`expectation`)."""
        return get_driver(self.driver).keeps_records


@dataclass(frozen=True, slots=True)
class Resident:
    """Who the kiosk signs in (``hut-sim session start``): an age band, or a birth date ``age_days`` ago.

    ``after`` = (kind, n) signs the resident in only once n observations of that kind have left the gateway:
    a glucose meter hands over its stored records (the days before, other residents') at its first
    connection, and those must not be this resident's (see README, "scripts/demo --scenario").
    """

    code: str
    age_band: str | None = None
    age_days: int | None = None
    after: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Expectation:
    """What must happen, and nothing else.

    ``clinician``: rule names (or prefixes, such as ``news2.``) that must each fire a clinician alert; any
    other clinician alert fails the scenario. ``hut_staff``: the same for the hut's own staff, whose alerts
    are about anonymous readings and carry no subject. ``quality``: flags that must come back to the hut as
    "measure again" commands (or to a technician as an alert), with no clinician alert at all. None of them:
    no alert for anyone. Scenarios that wait for nothing end after ``min_s`` and ``min_observations``
    observations from each device. ``note``: why this differs from the scenario's usual expectation, for the
    technician (see :func:`expectation`).
    """

    clinician: tuple[str, ...] = ()
    quality: tuple[str, ...] = ()
    hut_staff: tuple[str, ...] = ()
    min_s: float = 40.0
    min_observations: int = 3
    note: str = ""

    @property
    def silent(self) -> bool:
        return not self.clinician and not self.quality and not self.hut_staff


@dataclass(frozen=True, slots=True)
class DemoScenario:
    name: str
    description: str
    devices: tuple[SimDevice, ...]
    resident: Resident
    expect: Expectation
    timeout_s: float = 120.0


def _cuff(scenario: str) -> SimDevice:
    args = ("--scenario", scenario, "--steady", "--interval", SPOT_INTERVAL_S, "--seed", "11")
    return SimDevice("ble-blood-pressure", "cuff-1", "ble", args)


def _thermometer(scenario: str) -> SimDevice:
    args = ("--scenario", scenario, "--steady", "--interval", SPOT_INTERVAL_S, "--seed", "12")
    return SimDevice("ble-thermometer", "thermometer-1", "ble", args)


def _meter(scenario: str) -> SimDevice:
    args = ("--scenario", scenario, "--steady", "--interval", SPOT_INTERVAL_S, "--seed", "13")
    return SimDevice("ble-glucose", "glucose-1", "ble", args)


def _oximeter(scenario: str) -> SimDevice:
    return SimDevice("contec-cms50", "oximeter-1", "pty", ("--scenario", scenario, "--seed", "14"))


def _healthypi(scenario: str, *extra: str, strip_seconds: int = 10) -> SimDevice:
    return SimDevice(
        "healthypi",
        "vitals-1",
        "pty",
        ("--scenario", scenario, "--seed", "15", *extra),
        MappingProxyType({"strip_seconds": strip_seconds}),
    )


def _table(*scenarios: DemoScenario) -> Mapping[str, DemoScenario]:
    return MappingProxyType({s.name: s for s in scenarios})


SCENARIOS: Mapping[str, DemoScenario] = _table(
    DemoScenario(
        "normal",
        "a healthy adult of 70-79 at rest measured on every instrument: no alert for anyone",
        (
            _cuff("normal-adult"),
            _thermometer("normal-adult"),
            _meter("normal-adult"),
            _oximeter("normal-adult"),
            _healthypi("normal-adult"),
        ),
        Resident("DEMO-NORMAL-0001", age_band=ADULT_BAND),
        Expectation(),
    ),
    DemoScenario(
        "hypertensive-crisis",
        "185/125 mmHg on the cuff: a possible hypertensive crisis, an emergency that needs no repeat",
        (_cuff("hypertensive-crisis"),),
        Resident("DEMO-BP-0002", age_band=ADULT_BAND),
        Expectation(clinician=("bp.possible_crisis",)),
    ),
    DemoScenario(
        "hypoxia",
        "SpO2 88 % on the CMS50: a NEWS2 red cell (score 3), confirmed by a repeat 10 s later",
        (_oximeter("hypoxaemia"),),
        Resident("DEMO-SPO2-0003", age_band=ADULT_BAND),
        Expectation(clinician=("news2.spo2",)),
    ),
    DemoScenario(
        "fever-infant",
        "an infant of 9 weeks at 39.2 °C: NICE NG143 red (>= 38 °C under 3 months), confirmed by a repeat",
        (_thermometer("fever"),),
        Resident("DEMO-INFANT-0004", age_days=63),
        Expectation(clinician=("nice.fever_red",)),
    ),
    DemoScenario(
        "hypoglycaemia",
        "glucose 3.2 mmol/L: ADA level 1 hypoglycaemia, confirmed by the meter's next record",
        (_meter("hypoglycaemia"),),
        # The meter holds 5 records from the days before and takes one at once: 6 at its first connection.
        Resident("DEMO-GLUCOSE-0005", age_band=ADULT_BAND, after=("blood_glucose", 6)),
        Expectation(clinician=("glucose.hypo_level_1",)),
    ),
    DemoScenario(
        "atrial-fibrillation",
        "AF averaging 110 /min on the HealthyPi ECG: possible AF in two strips (20 s each: the gateway judges "
        "irregularity on 20 RR intervals or more)",
        (_healthypi("atrial-fibrillation", strip_seconds=20),),
        Resident("DEMO-ECG-0006", age_band=ADULT_BAND),
        Expectation(clinician=("ecg.possible_af",)),
        timeout_s=150.0,
    ),
    DemoScenario(
        "lead-off",
        "the HealthyPi's ECG leads come off 4 s in every 10: the hut is asked to measure again, no clinician is told",
        (_healthypi("normal-adult", "--fault", "leads-off"),),
        Resident("DEMO-LEADS-0007", age_band=ADULT_BAND),
        Expectation(quality=("lead_off",)),
    ),
    DemoScenario(
        "motion-artifact",
        "the resident fidgets during the HealthyPi measurement: motion_artifact on the PPG and ECG, the hut "
        "is asked to measure again, no clinician is told",
        (_healthypi("normal-adult", "--fault", "motion"),),
        Resident("DEMO-MOTION-0008", age_band=ADULT_BAND),
        Expectation(quality=("motion_artifact",)),
    ),
)


def scenario(name: str) -> DemoScenario:
    """The scenario called ``name``; KeyError lists the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no demo scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def expectation(scenario: DemoScenario, clock_synchronised: bool | None) -> Expectation:
    """What the hut really does in ``scenario`` on a host whose kernel clock is NTP-synchronised or not
    (``healthhut.gateway.clock.kernel_clock_synchronised``; None, not known, counts as not, as the gateway
    treats it).

    Without a synchronised clock the gateway flags every reading ``clock_unverified``, and a stored record
    without a trusted time is never given to whoever is signed in (README, "Residents: sessions and
    pseudonyms"): the resident's readings from a device that keeps records are anonymous, so each rule they
    would raise fires for the hut's staff instead of a clinician. (Only rules that need no age or clinical
    flags fire for an anonymous reading, ``collector.alerting.rules.evaluate_anonymous``: the glucose levels
    do; a meter scenario expecting another rule would need more than this.)
    """
    expect = scenario.expect
    keeping = [d for d in scenario.devices if d.keeps_records]
    if clock_synchronised or not keeping or not expect.clinician:
        return expect
    if len(keeping) != len(scenario.devices):
        raise ValueError(
            f"scenario {scenario.name!r} expects clinician alerts from devices of which only some keep records: "
            "which rules become the hut staff's cannot be told"
        )
    clock = (
        "this machine's kernel clock is not NTP-synchronised"
        if clock_synchronised is False
        else "whether this machine's kernel clock is NTP-synchronised is not known (the gateway treats it as not)"
    )
    devices = ", ".join(d.name for d in keeping)
    rules = ", ".join(expect.clinician)
    note = (
        f"{clock}, so the stored records of {devices} stay anonymous and {rules} goes to the hut's staff "
        '(hh/v1/alerts/{hut}/staff), not to a clinician; see README, "Residents: sessions and pseudonyms"'
    )
    return replace(expect, clinician=(), hut_staff=expect.clinician, note=note)
