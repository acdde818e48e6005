"""What hut-sim can play over a serial line: for each serial driver, a stream of encoded frames at the device's
own pace, set to a clinical scenario."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from healthhut.drivers import DriverSpec, SerialLink, StreamDecoder
from healthhut.drivers.contec_cms50 import SERIAL_LINKS, Cms50Decoder, Cms50Frame, Cms50V2Decoder, Cms50V2Frame
from healthhut.drivers.contec_cms50.codec import PULSE_RATE_UNAVAILABLE, SPO2_UNAVAILABLE
from healthhut.drivers.contec_cms50.codec_v2 import PI_UNAVAILABLE
from healthhut.drivers.healthypi import DRIVER as HEALTHYPI_DRIVER
from healthhut.drivers.healthypi import HealthyPi5Decoder, HealthyPi5Frame, HealthyPiDecoder, HealthyPiFrame
from healthhut.firmware_sim.encoders.contec_cms50 import SAMPLE_RATE_HZ, Cms50Stream, encode_frame
from healthhut.firmware_sim.encoders.contec_cms50_v2 import Cms50V2Stream, encode_realtime
from healthhut.firmware_sim.encoders.healthypi import IR_DC, RED_DC, HealthyPiStream, encode_packet
from healthhut.firmware_sim.encoders.healthypi import SAMPLE_RATE_HZ as HEALTHYPI_RATE_HZ
from healthhut.firmware_sim.encoders.healthypi5 import SAMPLE_RATE_HZ as HEALTHYPI5_RATE_HZ
from healthhut.firmware_sim.encoders.healthypi5 import HealthyPi5Stream
from healthhut.firmware_sim.encoders.healthypi5 import encode_packet as encode_packet_v5
from healthhut.firmware_sim.faults import Fault
from healthhut.firmware_sim.scenarios import Scenario


class FrameSource(Protocol):
    def frames(self, n: int) -> bytes: ...

    def override(self, frames: int, fields: Mapping[str, int]) -> None: ...


@runtime_checkable
class CommandSink(Protocol):
    """A source that listens to the host, as devices with a start command do."""

    def receive(self, data: bytes) -> None: ...


@runtime_checkable
class ElectrodeSource(Protocol):
    """A source with ECG electrodes that can come off."""

    def leads_off(self) -> None: ...

    def leads_on(self) -> None: ...


@runtime_checkable
class MotionSource(Protocol):
    """A source whose signals show the resident's movement."""

    def start_moving(self) -> None: ...

    def stop_moving(self) -> None: ...


def show_signal_fault(source: FrameSource, fault: Fault, on: bool) -> None:
    """Start (``on``) or end a signal fault in ``source``'s next frames. TypeError if it cannot show it."""
    if fault is Fault.LEADS_OFF and isinstance(source, ElectrodeSource):
        if on:
            source.leads_off()
        else:
            source.leads_on()
    elif fault is Fault.MOTION and isinstance(source, MotionSource):
        if on:
            source.start_moving()
        else:
            source.stop_moving()
    else:
        raise TypeError(f"{type(source).__name__} cannot show {fault}")


# The faults every serial device can show on its line; value faults depend on the device's fields.
LINE_FAULTS = frozenset({Fault.UNPLUG_MID_FRAME, Fault.GARBAGE})


@dataclass(frozen=True, slots=True)
class Player:
    """A playable serial device: its frame rate and size, a factory taking a scenario and a seed, and the raw
    field values its value faults send (``fault_fields``).

    For MQTT (hut-sim playing the gateway's part too): ``serial_link`` says what the gateway writes to it,
    ``new_decoder(strip_samples)`` is the driver's decoder, and ``spot_frame`` one frame that carries the
    scenario's numbers at once, for load tests that want readings faster than the device's schedule.
    ``signal_faults`` are the faults its stream shows in the signal itself (:func:`show_signal_fault`).
    """

    driver: str
    description: str
    frames_per_second: float
    frame_size: int
    new_source: Callable[[Scenario, int | None], FrameSource]
    serial_link: SerialLink
    new_decoder: Callable[[int], StreamDecoder]
    spot_frame: Callable[[Scenario, random.Random], bytes]
    fault_fields: Mapping[Fault, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    signal_faults: frozenset[Fault] = frozenset()
    # Other protocol generations of the device, named as the driver's ``setting`` (``protocol`` for the CMS50,
    # ``board`` for the HealthyPi) names them; ``default_protocol`` names this player's own.
    default_protocol: str | None = None
    protocols: Mapping[str, Player] = field(default_factory=lambda: MappingProxyType({}))
    setting: str = "protocol"

    @property
    def faults(self) -> frozenset[Fault]:
        """The line and value faults, which every link shows (a whole hut over MQTT too)."""
        return LINE_FAULTS | frozenset(self.fault_fields)

    @property
    def serial_faults(self) -> frozenset[Fault]:
        """What the device shows played over a pty or a serial port: its faults and its signal faults."""
        return self.faults | self.signal_faults

    def for_protocol(self, protocol: str | None) -> Player:
        """This player, or its sibling for ``protocol``. KeyError says which protocols there are."""
        if protocol is None or protocol == self.default_protocol:
            return self
        try:
            return self.protocols[protocol]
        except KeyError:
            known = ", ".join(filter(None, (self.default_protocol, *self.protocols))) or "none"
            raise KeyError(f"{self.driver} has no {self.setting} {protocol!r}; it has: {known}") from None


def _cms50(scenario: Scenario, seed: int | None) -> Cms50Stream:
    return Cms50Stream(
        scenario.spo2, scenario.pulse_rate, seed=seed, rhythm=scenario.rhythm, pause_every=scenario.pause_every
    )


def _cms50_v2(scenario: Scenario, seed: int | None) -> Cms50V2Stream:
    return Cms50V2Stream(
        scenario.spo2, scenario.pulse_rate, seed=seed, rhythm=scenario.rhythm, pause_every=scenario.pause_every
    )


def _healthypi(scenario: Scenario, seed: int | None) -> HealthyPiStream:
    return HealthyPiStream(
        scenario.pulse_rate,
        scenario.spo2,
        respiration_rate=scenario.respiration_rate,
        temperature=scenario.temperature,
        seed=seed,
        rhythm=scenario.rhythm,
        pause_every=scenario.pause_every,
    )


def _healthypi5(scenario: Scenario, seed: int | None) -> HealthyPi5Stream:
    return HealthyPi5Stream(
        scenario.pulse_rate,
        scenario.spo2,
        respiration_rate=scenario.respiration_rate,
        temperature=scenario.temperature,
        seed=seed,
        rhythm=scenario.rhythm,
        pause_every=scenario.pause_every,
    )


def _serial_link(spec: DriverSpec) -> SerialLink:
    if spec.serial is None:
        raise TypeError(f"driver {spec.name} has no serial link")
    return spec.serial


def _near(value: int, spread: int, allowed: range, rng: random.Random) -> int:
    return min(max(value + rng.randint(-spread, spread), allowed.start), allowed.stop - 1)


def _cms50_spot(scenario: Scenario, rng: random.Random) -> bytes:
    spo2, pulse = _near(scenario.spo2, 1, range(1, 101), rng), _near(scenario.pulse_rate, 2, range(1, 255), rng)
    frame = Cms50Frame(
        signal_strength=6,
        searching_too_long=False,
        spo2_dropping=False,
        beep=False,
        pleth=64,
        bar_graph=8,
        probe_error=False,
        searching=False,
        pulse_rate=pulse,
        spo2=spo2,
    )
    return encode_frame(frame)


def _cms50_v2_spot(scenario: Scenario, rng: random.Random) -> bytes:
    spo2, pulse = _near(scenario.spo2, 1, range(1, 101), rng), _near(scenario.pulse_rate, 2, range(1, 255), rng)
    frame = Cms50V2Frame(
        signal_strength=6,
        searching_too_long=False,
        spo2_dropping=False,
        beep=False,
        probe_error=False,
        pleth=64,
        searching=False,
        bar_graph=8,
        pi_invalid=True,
        reserved=0,
        pulse_rate=pulse,
        spo2=spo2,
        perfusion_index_raw=PI_UNAVAILABLE,
    )
    return encode_realtime(frame)


def _healthypi_spot(scenario: Scenario, rng: random.Random) -> bytes:
    frame = HealthyPiFrame(
        ecg=0,
        respiration=0,
        ppg_ir=IR_DC,
        ppg_red=RED_DC,
        temperature_centi=round(scenario.temperature * 100) + rng.randint(-5, 5),
        respiration_rate=scenario.respiration_rate,
        spo2=_near(scenario.spo2, 1, range(1, 101), rng),
        heart_rate=_near(scenario.pulse_rate, 1, range(1, 251), rng),
        bp_systolic_placeholder=80,
        bp_diastolic_placeholder=120,
        lead_status=0,
    )
    return encode_packet(frame)


def _healthypi5_spot(scenario: Scenario, rng: random.Random) -> bytes:
    frame = HealthyPi5Frame(
        ecg=0,
        bioz=0,
        bioz_skip=0,
        ppg_red=RED_DC,
        ppg_ir=IR_DC,
        temperature_centi=round(scenario.temperature * 100) + rng.randint(-5, 5),
        spo2=_near(scenario.spo2, 1, range(1, 101), rng),
        heart_rate=_near(scenario.pulse_rate, 1, range(1, 255), rng),
        respiration_rate=scenario.respiration_rate,
    )
    return encode_packet_v5(frame)


# The CMS50 has no IEEE special values; its own "no value" sentinel (SpO2 127, README of the driver) is what
# it sends instead. Its SpO2 field has 7 bits, so 101-126 are values beyond any saturation.
_CMS50_FAULTS: Mapping[Fault, Mapping[str, int]] = MappingProxyType(
    {
        Fault.SPECIAL_VALUES: MappingProxyType({"spo2": SPO2_UNAVAILABLE}),
        Fault.OUT_OF_RANGE: MappingProxyType({"spo2": 115}),
    }
)
# The 9-byte generation keeps a pulse rate of 255 as "no value" too.
_CMS50_V2_FAULTS: Mapping[Fault, Mapping[str, int]] = MappingProxyType(
    {
        Fault.SPECIAL_VALUES: MappingProxyType({"spo2": SPO2_UNAVAILABLE, "pulse_rate": PULSE_RATE_UNAVAILABLE}),
        Fault.OUT_OF_RANGE: MappingProxyType({"spo2": 115}),
    }
)
# The HealthyPi's numbers are plain bytes with 0 for "none yet"; out of range is past what its firmware and
# sensors can report (heart rate capped at 250, SpO2 at 100, the MAX30205 at 50 °C).
_HEALTHYPI_FAULTS: Mapping[Fault, Mapping[str, int]] = MappingProxyType(
    {Fault.OUT_OF_RANGE: MappingProxyType({"spo2": 120, "heart_rate": 255, "temperature_centi": 5500})}
)
# The HealthyPi 5's numbers are bytes too (its temperature an int16); heart rate 255 is past the Zephyr
# firmware's own rule (0 < hr < 255).
_HEALTHYPI5_FAULTS = _HEALTHYPI_FAULTS
# Both boards stream ECG and PPG, so both show a lead coming off and a resident who moves.
_HEALTHYPI_SIGNAL_FAULTS = frozenset({Fault.LEADS_OFF, Fault.MOTION})

PLAYERS: dict[str, Player] = {
    "contec-cms50": Player(
        driver="contec-cms50",
        description="Contec CMS50D+/CMS50E pulse oximeter, 5-byte live protocol at 60 frames/s",
        frames_per_second=SAMPLE_RATE_HZ,
        frame_size=5,
        new_source=_cms50,
        serial_link=SERIAL_LINKS["5-byte"],
        new_decoder=lambda strip_samples: Cms50Decoder(strip_samples=strip_samples),
        spot_frame=_cms50_spot,
        fault_fields=_CMS50_FAULTS,
        default_protocol="5-byte",
        protocols=MappingProxyType(
            {
                "9-byte": Player(
                    driver="contec-cms50",
                    description="Contec CMS50D+/CMS50E firmware 4.6+, 9-byte protocol at 60 packets/s; "
                    "streams after the start command",
                    frames_per_second=SAMPLE_RATE_HZ,
                    frame_size=9,
                    new_source=_cms50_v2,
                    serial_link=SERIAL_LINKS["9-byte"],
                    new_decoder=lambda strip_samples: Cms50V2Decoder(strip_samples=strip_samples),
                    spot_frame=_cms50_v2_spot,
                    fault_fields=_CMS50_V2_FAULTS,
                    default_protocol="9-byte",
                ),
            }
        ),
    ),
    "healthypi": Player(
        driver="healthypi",
        description="ProtoCentral HealthyPi v4 (ECG, PPG, SpO2, temperature), OpenView packets at 125/s",
        frames_per_second=HEALTHYPI_RATE_HZ,
        frame_size=27,
        new_source=_healthypi,
        serial_link=_serial_link(HEALTHYPI_DRIVER),
        new_decoder=lambda strip_samples: HealthyPiDecoder(strip_samples=strip_samples),
        spot_frame=_healthypi_spot,
        fault_fields=_HEALTHYPI_FAULTS,
        signal_faults=_HEALTHYPI_SIGNAL_FAULTS,
        default_protocol="v4",
        setting="board",
        protocols=MappingProxyType(
            {
                "v5": Player(
                    driver="healthypi",
                    description="ProtoCentral HealthyPi 5 (ECG, PPG, SpO2, temperature) over USB, OpenView "
                    'packets at 128/s; the gateway needs board = "v5"',
                    frames_per_second=HEALTHYPI5_RATE_HZ,
                    frame_size=29,
                    new_source=_healthypi5,
                    serial_link=_serial_link(HEALTHYPI_DRIVER),
                    new_decoder=lambda strip_samples: HealthyPi5Decoder(strip_samples=strip_samples),
                    spot_frame=_healthypi5_spot,
                    fault_fields=_HEALTHYPI5_FAULTS,
                    signal_faults=_HEALTHYPI_SIGNAL_FAULTS,
                    default_protocol="v5",
                    setting="board",
                ),
            }
        ),
    ),
}
