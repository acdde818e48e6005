"""The alert rules' profile from a reading's wire subject, as the gateway's resident sessions write it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from healthhut.collector.alerting.model import SubjectProfile
from healthhut.gateway.identity import age_band
from healthhut.protocol import Subject

AT = datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("born", "months", "adult"),
    [
        (date(2026, 9, 1), 2, False),  # an infant: the NICE under-3-months fever rule applies
        (date(2022, 1, 1), 48, False),
        (date(2008, 11, 22), 216, True),  # eighteen today
        (date(1950, 1, 1), 840, True),
        (date(1930, 1, 1), 960, True),
    ],
)
def test_the_age_band_the_gateway_writes_gives_its_lower_bound(born: date, months: int, adult: bool) -> None:
    subject = Subject(pseudonym="a" * 64, age_band=age_band(born, AT), clinical=["hypercapnic_respiratory_failure"])
    profile = SubjectProfile.from_subject(subject)
    assert profile is not None
    assert (profile.age_months, profile.is_adult, profile.hypercapnic_respiratory_failure) == (months, adult, True)
    assert not profile.pregnant


@pytest.mark.parametrize("band", [None, "old", "7w"])
def test_no_age_no_profile(band: str | None) -> None:
    assert SubjectProfile.from_subject(Subject(pseudonym="a" * 64, age_band=band)) is None
    assert SubjectProfile.from_subject(None) is None


@pytest.mark.parametrize(
    ("clinical", "flags"),
    [
        ([], (False, False, False, False)),
        (["diabetes"], (False, False, True, False)),
        (["hypertension_treated"], (False, False, False, True)),
        (["pregnancy", "diabetes"], (False, True, True, False)),
        (
            ["hypercapnic_respiratory_failure", "pregnancy", "diabetes", "hypertension_treated"],
            (True, True, True, True),
        ),
    ],
)
def test_every_clinical_flag_of_the_wire_reaches_the_profile(clinical: list[str], flags: tuple[bool, ...]) -> None:
    subject = Subject.model_validate({"pseudonym": "a" * 64, "age_band": "50-59y", "clinical": clinical})
    profile = SubjectProfile.from_subject(subject)
    assert profile == SubjectProfile(
        600,
        hypercapnic_respiratory_failure=flags[0],
        pregnant=flags[1],
        diabetes=flags[2],
        hypertension_treated=flags[3],
    )
