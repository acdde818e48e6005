"""``hut-collector export-fhir``: observations stored by the real collector in real influxd, read back
by InfluxQL and written as a FHIR R4 Bundle that validates against the FHIR models (fhir.resources)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from healthhut.collector import cli
from healthhut.collector.fhir import LOINC, MDC, UCUM
from healthhut.devstack import LocalStack
from healthhut.protocol import (
    Device,
    Flag,
    Kind,
    ObservationBatch,
    Quantity,
    Reading,
    Subject,
    encode,
    hut_topic,
    observation_from_reading,
)
from tests.collector.test_ingest import collector_config, publish, running
from tests.conftest import eventually

RESIDENT = Subject(pseudonym="ab" * 32, age_band="70-79")
NEIGHBOUR = Subject(pseudonym="cd" * 32)
T0 = datetime(2026, 11, 21, 8, 30, 0, 120000, tzinfo=UTC)
CUFF = Device(driver="ble-blood-pressure", device_id="cuff-1")
OXIMETER = Device(driver="contec-cms50", device_id="ox-1")


def readings(hut: str) -> ObservationBatch:
    bp = Reading(
        kind=Kind.BLOOD_PRESSURE,
        values={
            "systolic": Quantity(152.0, "mm[Hg]"),
            "diastolic": Quantity(94.0, "mm[Hg]"),
            "mean_arterial": Quantity(113.3, "mm[Hg]"),
            "pulse_rate": Quantity(77.0, "/min"),
        },
    )
    spo2 = Reading(kind=Kind.SPO2, values={"spo2": Quantity(95.0, "%"), "pulse_rate": Quantity(80.0, "/min")})
    observations = [
        observation_from_reading(bp, hut_id=hut, device=CUFF, received_at=T0, device_seq=1, subject=RESIDENT),
        observation_from_reading(
            spo2,
            hut_id=hut,
            device=OXIMETER,
            received_at=T0 + timedelta(minutes=1),
            device_seq=2,
            subject=RESIDENT,
            extra_flags=frozenset({Flag.MOTION_ARTIFACT}),
            fit_for_alerting=False,
        ),
        # Someone else's, and the resident's own from the day before: neither belongs in the export.
        observation_from_reading(spo2, hut_id=hut, device=OXIMETER, received_at=T0, device_seq=3, subject=NEIGHBOUR),
        observation_from_reading(
            spo2, hut_id=hut, device=OXIMETER, received_at=T0 - timedelta(days=1), device_seq=4, subject=RESIDENT
        ),
    ]
    return ObservationBatch(hut_id=hut, boot_id="b", seq=1, sent_at=T0, observations=observations)


def export(config_path: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = cli.main(
        [
            "export-fhir",
            "--config",
            str(config_path),
            "--subject",
            RESIDENT.pseudonym,
            "--from",
            "2026-11-21",
            "--to",
            "2026-11-22",
            "--output",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    return json.loads(out.read_text())  # type: ignore[no-any-return]


async def test_export_is_a_valid_phd_coded_bundle_of_that_subject_only(
    stack: LocalStack, tmp_path: Path, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hut, db = f"hut-{unique}", f"fhir_{unique}"
    storage = {"type": "influxdb1", "url": stack.influxd.url, "database": db}
    config = collector_config(stack, tmp_path, unique, storage)
    async with running(config) as ingest:
        await publish(stack, [(hut_topic(hut, "obs"), encode(readings(hut)))])
        await eventually(lambda: ingest.stats.observations == 4)
    config_path = tmp_path / "collector.toml"
    config_path.write_text(
        f'[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\ndatabase = "{db}"\n'
        f'[dead_letters]\npath = "{tmp_path / "dead.sqlite"}"\n'
    )
    document = export(config_path, tmp_path / "a.json", capsys)
    parsed = Bundle.model_validate(document)  # structural validation against the FHIR model
    assert parsed.type == "collection"
    resources = [entry["resource"] for entry in document["entry"]]  # type: ignore[index, union-attr]
    devices = [r for r in resources if r["resourceType"] == "Device"]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert sorted(d["identifier"][0]["value"] for d in devices) == ["cuff-1", "ox-1"]
    # The cuff: a compound panel plus its pulse; the oximeter: SpO2 and pulse. Nothing of the neighbour's
    # and nothing from the day before.
    assert len(observations) == 4
    assert {o["subject"]["identifier"]["value"] for o in observations} == {RESIDENT.pseudonym}

    def codes(concept: dict[str, list[dict[str, str]]]) -> set[tuple[str, str]]:
        return {(c["system"], c["code"]) for c in concept["coding"]}

    panel = next(o for o in observations if (LOINC, "85354-9") in codes(o["code"]))
    assert (MDC, "150020") in codes(panel["code"])
    assert panel["meta"]["profile"] == ["http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCompoundNumericObservation"]
    components = {code: c["valueQuantity"] for c in panel["component"] for code in codes(c["code"])}
    assert components[(LOINC, "8480-6")] == {"value": 152.0, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}
    assert components[(LOINC, "8462-4")]["value"] == 94.0
    assert components[(LOINC, "8478-0")]["value"] == 113.3
    assert panel["effectiveDateTime"] == T0.isoformat()
    cuff_pulse = next(o for o in observations if (MDC, "149546") in codes(o["code"]))
    assert cuff_pulse["valueQuantity"]["value"] == 77.0 and cuff_pulse["device"] == panel["device"]
    saturation = next(o for o in observations if (MDC, "150456") in codes(o["code"]))
    assert saturation["valueQuantity"] == {"value": 95.0, "unit": "%", "system": UCUM, "code": "%"}
    assert "motion_artifact" in saturation["note"][0]["text"] and "not fit" in saturation["note"][0]["text"]
    assert "note" not in panel
    # The PHD identifier is stable: the same readings exported again carry the same identifiers.
    again = export(config_path, tmp_path / "b.json", capsys)
    first_ids = [o["identifier"][0]["value"] for o in observations]
    second_ids = [
        e["resource"]["identifier"][0]["value"]  # type: ignore[index]
        for e in again["entry"]  # type: ignore[union-attr]
        if e["resource"]["resourceType"] == "Observation"  # type: ignore[index]
    ]
    assert first_ids == second_ids and len(set(first_ids)) == 4


def test_a_subject_that_is_not_a_pseudonym_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = tmp_path / "collector.toml"
    config_path.write_text(
        '[storage]\ntype = "influxdb1"\nurl = "http://127.0.0.1:9"\n'
        f'[dead_letters]\npath = "{tmp_path / "dead.sqlite"}"\n'
    )
    code = cli.main(
        ["export-fhir", "-c", str(config_path), "--subject", "' OR 1=1", "--from", "2026-01-01", "--to", "2026-02-01"]
    )
    assert code == cli.EXIT_EXPORT
    assert "pseudonym" in capsys.readouterr().err


def test_pseudonym_command_maps_a_pseudonym_back_through_a_roster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from healthhut.protocol.pseudonym import generate_key_file

    key = tmp_path / "pseudonym.key"
    generate_key_file(key)
    assert cli.main(["pseudonym", "--key", str(key), "--resident", "11010519491231002x"]) == 0
    pseudonym = capsys.readouterr().out.strip()
    assert len(pseudonym) == 64
    roster = tmp_path / "roster.txt"
    roster.write_text("110105194912310039\n11010519491231002X\n")
    assert cli.main(["pseudonym", "--key", str(key), "--lookup", pseudonym, "--roster", str(roster)]) == 0
    assert capsys.readouterr().out.strip() == "11010519491231002X"
    roster.write_text("110105194912310039\n")
    assert cli.main(["pseudonym", "--key", str(key), "--lookup", pseudonym, "--roster", str(roster)]) == 1
    assert "no identifier" in capsys.readouterr().err
    key.chmod(0o644)
    assert cli.main(["pseudonym", "--key", str(key), "--resident", "x"]) == cli.EXIT_CONFIG
    assert "owner only" in capsys.readouterr().err


def test_pseudonym_new_makes_a_private_key_and_never_replaces_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "keys" / "new.key"
    assert cli.main(["pseudonym", "--key", str(key), "--new"]) == 0
    written = key.read_bytes()
    assert key.stat().st_mode & 0o777 == 0o600 and len(written.strip()) == 64
    assert written.decode() not in capsys.readouterr().err  # the key is never printed
    assert cli.main(["pseudonym", "--key", str(key), "--resident", "11010519491231002X"]) == 0
    assert len(capsys.readouterr().out.strip()) == 64
    assert cli.main(["pseudonym", "--key", str(key), "--new"]) == cli.EXIT_FAILURE
    assert "exists" in capsys.readouterr().err and key.read_bytes() == written
