"""Export one subject's observations as a FHIR R4 Bundle, coded per the HL7 Personal Health Device IG.

What is read back: the spot observations of the InfluxDB schema (``collector.points``), by InfluxQL, which
InfluxDB 1.x serves at ``/query`` and 2.x/3.x serve through their v1-compatible ``/query`` (a DBRP
mapping for the bucket). What is written: a ``collection`` Bundle holding one Device per instrument and
Observations that follow the PHD IG (http://hl7.org/fhir/uv/phd/):

- ``code``: the LOINC code and the IEEE 11073-10101 MDC code of the measurement, from the protocol
  vocabulary; ``valueQuantity`` in UCUM (``http://unitsofmeasure.org``).
- blood pressure as one compound Observation (panel 85354-9 / MDC 150020) with systolic, diastolic and
  mean as components (PhdCompoundNumericObservation); every other value its own PhdNumericObservation.
- ``identifier``: the PHD observation identifier for conditional create, made as the IG's STU1
  "Observation Identifier" page describes (device, patient, type, value, unit and reported time
  joined by dashes), so that exporting the same reading twice yields the same identifier. Deviation:
  our device identity is the driver's device id, not an IEEE EUI-64 system id, which the SIG profiles
  do not expose.
- ``subject``: the resident's pseudonym only, by identifier; never a name or an ID number.
- quality flags go into ``note``; a reading unfit for alerting is not hidden but says so there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from healthhut.collector.config import Influx1Config, Influx2Config
from healthhut.collector.storage import QueryFailed, query_influxql
from healthhut.protocol import Kind
from healthhut.protocol.vocabulary import KINDS, ValueSpec

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
# Identifier systems of our own, as URNs under a UUID namespace so they cannot collide with anyone's.
_NAMESPACE = uuid.UUID("6f6b3a52-5d2c-4b5e-9a53-68656c746875")
SUBJECT_SYSTEM = f"urn:uuid:{uuid.uuid5(_NAMESPACE, 'subject-pseudonym')}"
DEVICE_SYSTEM = f"urn:uuid:{uuid.uuid5(_NAMESPACE, 'device-id')}"
OBSERVATION_SYSTEM = f"urn:uuid:{uuid.uuid5(_NAMESPACE, 'phd-observation-identifier')}"
# Spot kinds only: ecg and ppg measurements also hold every waveform sample, which is not exported.
SPOT_KINDS = (Kind.BLOOD_PRESSURE, Kind.SPO2, Kind.BODY_TEMPERATURE, Kind.BODY_WEIGHT, Kind.BLOOD_GLUCOSE)
DERIVED_KINDS = (Kind.HEART_RATE, Kind.ECG, Kind.PPG)
BP_COMPONENTS = ("systolic", "diastolic", "mean_arterial")


class ExportError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class StoredObservation:
    kind: Kind
    measured_at: datetime
    values: dict[str, float]
    driver: str
    device_id: str
    obs_id: str
    flags: tuple[str, ...]
    fit_for_alerting: bool


def read_observations(
    storage: Influx1Config | Influx2Config, subject: str, start: datetime, end: datetime
) -> list[StoredObservation]:
    """The subject's spot observations with ``start <= measured_at < end``, oldest first."""
    if len(subject) != 64 or any(c not in "0123456789abcdef" for c in subject):
        raise ExportError("a subject is its 64-hex-digit pseudonym")
    found: list[StoredObservation] = []
    for kind in (*SPOT_KINDS, *DERIVED_KINDS):
        query = (
            f'SELECT * FROM "{kind.value}" WHERE "subject" = \'{subject}\' AND "obs_id" <> \'\' '
            f"AND time >= '{start.astimezone(UTC).isoformat()}' AND time < '{end.astimezone(UTC).isoformat()}'"
        )
        try:
            reply = query_influxql(storage, query)
        except QueryFailed as exc:
            raise ExportError(str(exc)) from exc
        for result in reply.get("results", []):
            for series in result.get("series", []):
                columns = series["columns"]
                for row in series["values"]:
                    found.append(_stored(kind, dict(zip(columns, row, strict=True))))
    return sorted(found, key=lambda o: (o.measured_at, o.kind.value, o.obs_id))


def _stored(kind: Kind, row: dict[str, Any]) -> StoredObservation:
    names = KINDS[kind].values
    values = {
        name: float(row[name])
        for name, spec in names.items()
        if not spec.is_list and isinstance(row.get(name), (int, float)) and not isinstance(row.get(name), bool)
    }
    stamp = int(row["time"])
    return StoredObservation(
        kind=kind,
        measured_at=datetime.fromtimestamp(stamp // 1_000_000_000, UTC).replace(
            microsecond=(stamp % 1_000_000_000) // 1000
        ),
        values=values,
        driver=str(row.get("driver") or ""),
        device_id=str(row.get("device") or ""),
        obs_id=str(row["obs_id"]),
        flags=tuple(flag for flag in str(row.get("flags") or "").split(",") if flag),
        fit_for_alerting=bool(row.get("fit_for_alerting", True)),
    )


def _concept(loinc: str | None, mdc: int | None, text: str) -> dict[str, Any]:
    codings = []
    if loinc:
        codings.append({"system": LOINC, "code": loinc})
    if mdc:
        codings.append({"system": MDC, "code": str(mdc)})
    return {"coding": codings, "text": text}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _urn(*parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, '|'.join(parts))}"


def _identifier(obs: StoredObservation, subject: str, type_code: str, values: list[tuple[float, str]]) -> str:
    stamp = obs.measured_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f")[:-4]
    measured = "-".join(f"{value:g}-{unit}" for value, unit in values)
    return f"{obs.device_id}-{subject}-{type_code}-{measured}-{stamp}"


def _observation(
    obs: StoredObservation, subject: str, device_url: str, name: str | None, spec_of: dict[str, ValueSpec]
) -> dict[str, Any]:
    kind_spec = KINDS[obs.kind]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
        "subject": {"identifier": {"system": SUBJECT_SYSTEM, "value": subject}},
        "effectiveDateTime": obs.measured_at.isoformat(),
        "device": {"reference": device_url},
    }
    if name is None:  # the blood pressure panel
        parts = [n for n in BP_COMPONENTS if n in obs.values]
        resource["meta"] = {"profile": [PHD + "PhdCompoundNumericObservation"]}
        resource["code"] = _concept(kind_spec.loinc, kind_spec.mdc, "Blood pressure panel")
        resource["component"] = [
            {
                "code": _concept(spec_of[n].loinc, spec_of[n].mdc, n.replace("_", " ")),
                "valueQuantity": _quantity(obs.values[n], spec_of[n].unit),
            }
            for n in parts
        ]
        measured = [(obs.values[n], spec_of[n].unit) for n in parts]
        type_code = str(kind_spec.mdc)
    else:
        spec = spec_of[name]
        resource["meta"] = {"profile": [PHD + "PhdNumericObservation"]}
        resource["code"] = _concept(spec.loinc, spec.mdc, name.replace("_", " "))
        resource["valueQuantity"] = _quantity(obs.values[name], spec.unit)
        measured = [(obs.values[name], spec.unit)]
        type_code = str(spec.mdc or spec.loinc)
    resource["identifier"] = [{"system": OBSERVATION_SYSTEM, "value": _identifier(obs, subject, type_code, measured)}]
    notes = []
    if obs.flags:
        notes.append("quality flags: " + ", ".join(obs.flags))
    if not obs.fit_for_alerting:
        notes.append("not fit for clinical alerting")
    if notes:
        resource["note"] = [{"text": "; ".join(notes)}]
    return resource


def _device(driver: str, device_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "meta": {"profile": [PHD + "PhdDevice"]},
        "identifier": [{"system": DEVICE_SYSTEM, "value": device_id}],
        "deviceName": [{"name": driver, "type": "model-name"}],
    }


def bundle(observations: list[StoredObservation], subject: str, *, now: datetime | None = None) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle of the observations and the devices that made them."""
    entries: list[dict[str, Any]] = []
    devices: dict[tuple[str, str], str] = {}
    for obs in observations:
        key = (obs.driver, obs.device_id)
        if key not in devices:
            devices[key] = _urn("device", *key)
            entries.append({"fullUrl": devices[key], "resource": _device(*key)})
        spec_of = dict(KINDS[obs.kind].values)
        names: list[str | None] = []
        if obs.kind is Kind.BLOOD_PRESSURE and any(n in obs.values for n in BP_COMPONENTS):
            names.append(None)
        names.extend(
            name
            for name, spec in spec_of.items()
            if name in obs.values
            and (spec.loinc or spec.mdc)
            and not (obs.kind is Kind.BLOOD_PRESSURE and name in BP_COMPONENTS)
        )
        for name in names:
            resource = _observation(obs, subject, devices[key], name, spec_of)
            entries.append({"fullUrl": _urn("observation", obs.obs_id, name or "panel"), "resource": resource})
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": (now or datetime.now(UTC)).isoformat(),
        "entry": entries,
    }
