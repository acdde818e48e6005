"""HealthyPi v4 for hut-sim: OpenView data packets (the inverse of the driver's parser) and a 125 Hz stream.

The stream synthesises what the firmware would send: a filtered ECG and respiration, raw red and IR
counts whose ratio of ratios gives the set SpO2 (SpO2 = 110 − 25·R), and numbers that appear and refresh
on the firmware's own schedule (README of the driver, Quirks).
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Mapping
from types import MappingProxyType

from healthhut.drivers.healthypi.codec import ECG_UV_PER_COUNT, SAMPLE_RATE_HZ, HealthyPiFrame
from healthhut.firmware_sim.encoders.overrides import FrameOverrides
from healthhut.firmware_sim.encoders.wearer import Wearer
from healthhut.firmware_sim.signals import EcgGenerator, PpgGenerator, Rhythm

__all__ = ["LEADS_OFF_STATUS", "SAMPLE_RATE_HZ", "HealthyPiStream", "encode_packet"]

PAYLOAD = struct.Struct("<hhiiHBBBBBB")
HEADER = b"\x0a\xfa" + struct.pack("<H", PAYLOAD.size) + b"\x02"
TRAILER = b"\x00\x0b"

INT16 = range(-0x8000, 0x8000)
INT32 = range(-(2**31), 2**31)
UINT16 = range(0x10000)
UINT8 = range(0x100)
FIELD_RANGES: Mapping[str, range] = MappingProxyType(
    {
        "ecg": INT16,
        "respiration": INT16,
        "ppg_ir": INT32,
        "ppg_red": INT32,
        "temperature_centi": UINT16,
        "respiration_rate": UINT8,
        "spo2": UINT8,
        "heart_rate": UINT8,
        "bp_systolic_placeholder": UINT8,
        "bp_diastolic_placeholder": UINT8,
        "lead_status": UINT8,
    }
)

# The firmware's schedule, from its source (README of the driver, Quirks): SpO2 from a buffer of 100
# PPG samples taken every 20th packet; temperature when more than 10 000 ms have passed at 8 ms a packet;
# heart rate after a 2 s threshold window and 5 R peaks, then every 5 peaks.
SPO2_EVERY = 2000
TEMPERATURE_EVERY = 1251
HR_LEARN_PACKETS = 250
HR_PEAKS = 5
# Our model, not the firmware's: the respiration rate appears after two breaths and follows each one.
RR_BREATHS = 2
# Both ECG electrodes off (IN2P_OFF and IN2N_OFF of LOFF_STAT): what a pulled cable reads as.
LEADS_OFF_STATUS = 0x0C
# Plausible AFE4490 counts: a DC level per LED, and a pulse that lowers it (more blood, less light).
IR_DC, RED_DC = 150_000, 110_000
IR_PERFUSION = 0.015
PPG_NOISE = 15
RESPIRATION_AMPLITUDE = 800
# Movement (signals.MotionArtifact, -1..1) scaled to the board's units: the light reaching the photodiode
# swings by up to 5 % of its level, over three times the 1.5 % of a pulse; the electrodes' baseline by up
# to 3 mV, well beyond an R wave, as electrode motion does in the Noise Stress Test records.
MOTION_LIGHT_SHARE = 0.05
MOTION_ECG_UV = 3000.0


def encode_packet(frame: HealthyPiFrame) -> bytes:
    """The 27 bytes of ``frame``. ValueError names a field whose value does not fit its bytes."""
    for name, allowed in FIELD_RANGES.items():
        value = getattr(frame, name)
        if value not in allowed:
            raise ValueError(f"{name} must be in {allowed.start}..{allowed.stop - 1}, not {value}")
    payload = PAYLOAD.pack(
        frame.ecg,
        frame.respiration,
        frame.ppg_ir,
        frame.ppg_red,
        frame.temperature_centi,
        frame.respiration_rate,
        frame.spo2,
        frame.heart_rate,
        frame.bp_systolic_placeholder,
        frame.bp_diastolic_placeholder,
        frame.lead_status,
    )
    return HEADER + payload + TRAILER


def ratio_of_ratios(spo2: float) -> float:
    """R = (AC_red/DC_red) / (AC_ir/DC_ir) for a SpO2 on the empirical line SpO2 = 110 − 25·R."""
    return (110 - spo2) / 25


class HealthyPiStream(Wearer):
    """A HealthyPi v4 at 125 packets/s with a set heart rate, SpO2, respiration rate and temperature.

    :meth:`leads_off` and :meth:`leads_on` model the ECG cable; :meth:`start_moving` and :meth:`stop_moving`
    a resident who moves (irregular movement on the PPG and the ECG baseline); :meth:`override` sends raw
    field values (faults). ``rhythm`` and ``pause_every`` shape the ECG and the pulse (:class:`BeatClock`).
    The same seed gives the same bytes, however the packets are split between calls to :meth:`frames`.
    """

    def __init__(
        self,
        heart_rate: int,
        spo2: int,
        *,
        respiration_rate: int = 15,
        temperature: float = 36.5,
        seed: int | None = None,
        rhythm: Rhythm = Rhythm.SINUS,
        pause_every: int | None = None,
    ) -> None:
        if heart_rate not in range(30, 251):
            raise ValueError(f"heart_rate must be in 30..250, not {heart_rate}")
        if spo2 not in range(70, 101):
            raise ValueError(f"spo2 must be in 70..100, not {spo2}")
        if respiration_rate not in range(4, 61):
            raise ValueError(f"respiration_rate must be in 4..60, not {respiration_rate}")
        if not 0 < temperature <= 50:
            raise ValueError(f"temperature must be in (0, 50] °C, the MAX30205's range, not {temperature}")
        self._rng = random.Random(seed)
        self.heart_rate = heart_rate
        self.spo2 = spo2
        self.respiration_rate = respiration_rate
        self.temperature = temperature
        self._ecg = EcgGenerator(SAMPLE_RATE_HZ, heart_rate, self._rng, rhythm=rhythm, pause_every=pause_every)
        self._ppg = PpgGenerator(SAMPLE_RATE_HZ, heart_rate, self._rng, rhythm=rhythm, pause_every=pause_every)
        self._overrides = FrameOverrides(FIELD_RANGES, "packet field")
        self._wear()
        self._packet_index = 0
        self._breath_phase = 0.0
        self._breaths = 0
        self._r_peaks = 0
        self._shown_hr = 0
        self._shown_rr = 0
        self._shown_spo2 = 0
        self._shown_temperature = 0

    def override(self, frames: int, fields: Mapping[str, int]) -> None:
        """Send ``fields`` (packet field names to raw values) in the next ``frames`` packets."""
        self._overrides.set(frames, fields)

    def frames(self, n: int) -> bytes:
        """The next ``n`` packets, encoded."""
        if n < 0:
            raise ValueError(f"cannot produce {n} frames")
        return b"".join(encode_packet(self._overrides.apply(self._next_frame())) for _ in range(n))

    def _next_frame(self) -> HealthyPiFrame:
        self._packet_index += 1
        ecg = self._ecg.take(1)[0]
        pulse = self._ppg.take(1)[0].value
        self._ecg.rate_per_min = self._ppg.rate_per_min = self.heart_rate
        respiration = self._breathe()
        if self._packet_index > HR_LEARN_PACKETS and ecg.r_peak and self._leads_on:
            self._r_peaks += 1
            if self._r_peaks % HR_PEAKS == 0:
                self._shown_hr = self.heart_rate + self._rng.randint(-1, 1)
        if self._packet_index % SPO2_EVERY == 0:
            self._shown_spo2 = min(100, self.spo2 + self._rng.randint(-1, 1))
        if self._packet_index % TEMPERATURE_EVERY == 0:
            self._shown_temperature = round(self.temperature * 100) + self._rng.randint(-5, 5)
        ir_ac = IR_DC * IR_PERFUSION
        red_ac = RED_DC * IR_PERFUSION * ratio_of_ratios(self.spo2)
        ecg_uv, light = ecg.value_uv, 1.0
        if self._moving and self._finger_motion is not None and self._electrode_motion is not None:
            # Movement changes the optical path of both LEDs alike, and drags the electrodes' baseline.
            light += MOTION_LIGHT_SHARE * self._finger_motion.take(1)[0]
            ecg_uv += MOTION_ECG_UV * self._electrode_motion.take(1)[0]
        leads = self._leads_on
        return HealthyPiFrame(
            ecg=max(-0x8000, min(0x7FFF, round(ecg_uv / ECG_UV_PER_COUNT))) if leads else 0,
            respiration=respiration if leads else 0,
            ppg_ir=round(light * IR_DC - ir_ac * pulse + self._rng.gauss(0, PPG_NOISE)),
            ppg_red=round(light * RED_DC - red_ac * pulse + self._rng.gauss(0, PPG_NOISE)),
            temperature_centi=self._shown_temperature,
            respiration_rate=self._shown_rr if leads else 0,
            spo2=self._shown_spo2,
            heart_rate=self._shown_hr if leads else 0,
            bp_systolic_placeholder=80,
            bp_diastolic_placeholder=120,
            lead_status=0 if leads else LEADS_OFF_STATUS,
        )

    def _breathe(self) -> int:
        self._breath_phase += self.respiration_rate / 60 / SAMPLE_RATE_HZ
        if self._breath_phase >= 1:
            self._breath_phase -= 1
            self._breaths += 1
            if self._breaths >= RR_BREATHS:
                self._shown_rr = self.respiration_rate + self._rng.randint(-1, 1)
        return round(RESPIRATION_AMPLITUDE * math.sin(2 * math.pi * self._breath_phase))
