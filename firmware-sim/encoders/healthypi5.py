"""HealthyPi 5 for hut-sim: its 29-byte OpenView data packets (the exact inverse of the driver's v5 parser) and a
128 Hz stream.

The stream synthesises what the Arduino firmware sends (README of the driver, HealthyPi 5): MAX30001 ECG counts
at its 80 V/V gain, a BioZ respiration held between its 64 Hz reads, AFE4400 red and IR counts whose ratio of
ratios gives the set SpO2, and numbers that are 0 until the board has them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from types import MappingProxyType

from healthhut.drivers.healthypi.codec import START, STOP, TYPE_DATA
from healthhut.drivers.healthypi.codec_v5 import (
    DEFAULT_ECG_GAIN,
    PAYLOAD,
    PAYLOAD_LEN,
    SAMPLE_RATE_HZ,
    HealthyPi5Frame,
    ecg_uv_per_count,
)
from healthhut.firmware_sim.encoders.healthypi import (
    IR_DC,
    IR_PERFUSION,
    MOTION_ECG_UV,
    MOTION_LIGHT_SHARE,
    PPG_NOISE,
    RED_DC,
    ratio_of_ratios,
)
from healthhut.firmware_sim.encoders.overrides import FrameOverrides
from healthhut.firmware_sim.encoders.wearer import Wearer
from healthhut.firmware_sim.signals import EcgGenerator, PpgGenerator, Rhythm

__all__ = ["FIELD_RANGES", "SAMPLE_RATE_HZ", "HealthyPi5Stream", "encode_packet"]

HEADER = START + PAYLOAD_LEN.to_bytes(2, "little") + bytes([TYPE_DATA])

INT32 = range(-(2**31), 2**31)
INT16 = range(-0x8000, 0x8000)
UINT8 = range(0x100)
FIELD_RANGES: Mapping[str, range] = MappingProxyType(
    {
        "ecg": INT32,
        "bioz": INT32,
        "bioz_skip": UINT8,
        "ppg_red": INT32,
        "ppg_ir": INT32,
        "temperature_centi": INT16,
        "spo2": UINT8,
        "heart_rate": UINT8,
        "respiration_rate": UINT8,
    }
)


def encode_packet(frame: HealthyPi5Frame) -> bytes:
    """The 29 bytes of ``frame``. ValueError names a field whose value does not fit its bytes."""
    for name, allowed in FIELD_RANGES.items():
        value = getattr(frame, name)
        if value not in allowed:
            raise ValueError(f"{name} must be in {allowed.start}..{allowed.stop - 1}, not {value}")
    payload = PAYLOAD.pack(*(getattr(frame, name) for name in FIELD_RANGES))
    return HEADER + payload + STOP


# The MAX30001's ECG FIFO holds 18-bit two's complement samples.
ECG_COUNTS = range(-(2**17), 2**17)
# The firmware's schedule (README of the driver, HealthyPi 5): temperature once a second; the respiration rate
# after about 10 s and 3 breaths; BioZ read at 64 samples/s, so each value is held for two packets.
TEMPERATURE_EVERY = 128
RR_AFTER_PACKETS = 10 * 128
RR_BREATHS = 3
BIOZ_EVERY = 2
# Our model, not traced in the firmware: the R-to-R detector locks after 4 beats and then follows each beat;
# the SpO2 algorithm has its first result after 4 s of PPG and refreshes every second.
HR_LOCK_BEATS = 4
SPO2_AFTER_PACKETS = 4 * 128
SPO2_EVERY = 128
# BioZ counts: a DC level of the chest's impedance and a breath that swings it.
BIOZ_DC = 60_000
BIOZ_AMPLITUDE = 2_000
# No lead status travels in this packet (README of the driver, HealthyPi 5): with the electrodes off the
# MAX30001's ECG input saturates, so the stream holds the ECG at positive full scale and its R-to-R
# detector loses lock. The gateway sees it through its flat-line check.
LEADS_OFF_ECG = ECG_COUNTS.stop - 1


class HealthyPi5Stream(Wearer):
    """A HealthyPi 5 at 128 packets/s with a set heart rate, SpO2, respiration rate and temperature.

    ``rhythm`` and ``pause_every`` shape the ECG and the pulse (:class:`BeatClock`); ``ecg_gain`` is the
    MAX30001 gain the decoder must be told. :meth:`leads_off` and :meth:`leads_on` model the ECG cable,
    :meth:`start_moving` and :meth:`stop_moving` a resident who moves (as the v4 stream does);
    :meth:`override` sends raw field values (faults). The same seed
    gives the same bytes, however the packets are split between calls to :meth:`frames`.
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
        ecg_gain: int = DEFAULT_ECG_GAIN,
    ) -> None:
        if heart_rate not in range(30, 251):
            raise ValueError(f"heart_rate must be in 30..250, not {heart_rate}")
        if spo2 not in range(70, 101):
            raise ValueError(f"spo2 must be in 70..100, not {spo2}")
        if respiration_rate not in range(4, 61):
            raise ValueError(f"respiration_rate must be in 4..60, not {respiration_rate}")
        if not 0 < temperature <= 50:
            raise ValueError(f"temperature must be in (0, 50] °C, what the sensor reports, not {temperature}")
        self._rng = random.Random(seed)
        self.heart_rate = heart_rate
        self.spo2 = spo2
        self.respiration_rate = respiration_rate
        self.temperature = temperature
        self.uv_per_count = ecg_uv_per_count(ecg_gain)
        self._ecg = EcgGenerator(SAMPLE_RATE_HZ, heart_rate, self._rng, rhythm=rhythm, pause_every=pause_every)
        self._ppg = PpgGenerator(SAMPLE_RATE_HZ, heart_rate, self._rng, rhythm=rhythm, pause_every=pause_every)
        self._overrides = FrameOverrides(FIELD_RANGES, "packet field")
        self._wear()
        self._packet_index = 0
        self._breath_phase = 0.0
        self._breaths = 0
        self._bioz = BIOZ_DC
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

    def _next_frame(self) -> HealthyPi5Frame:
        self._packet_index += 1
        index = self._packet_index
        ecg = self._ecg.take(1)[0]
        pulse = self._ppg.take(1)[0].value
        self._ecg.rate_per_min = self._ppg.rate_per_min = self.heart_rate
        self._breathe()
        if ecg.r_peak and self._leads_on:
            self._r_peaks += 1
            if self._r_peaks >= HR_LOCK_BEATS:
                self._shown_hr = self.heart_rate + self._rng.randint(-1, 1)
        if index >= SPO2_AFTER_PACKETS and index % SPO2_EVERY == 0:
            self._shown_spo2 = min(100, self.spo2 + self._rng.randint(-1, 1))
        if index % TEMPERATURE_EVERY == 0:
            self._shown_temperature = round(self.temperature * 100) + self._rng.randint(-3, 3)
        ir_ac = IR_DC * IR_PERFUSION
        red_ac = RED_DC * IR_PERFUSION * ratio_of_ratios(self.spo2)
        ecg_uv, light = ecg.value_uv, 1.0
        if self._moving and self._finger_motion is not None and self._electrode_motion is not None:
            light += MOTION_LIGHT_SHARE * self._finger_motion.take(1)[0]
            ecg_uv += MOTION_ECG_UV * self._electrode_motion.take(1)[0]
        counts = round(ecg_uv / self.uv_per_count) if self._leads_on else LEADS_OFF_ECG
        return HealthyPi5Frame(
            ecg=min(max(counts, ECG_COUNTS.start), ECG_COUNTS.stop - 1),
            bioz=self._bioz,
            bioz_skip=0,
            ppg_red=round(light * RED_DC - red_ac * pulse + self._rng.gauss(0, PPG_NOISE)),
            ppg_ir=round(light * IR_DC - ir_ac * pulse + self._rng.gauss(0, PPG_NOISE)),
            temperature_centi=self._shown_temperature,
            spo2=self._shown_spo2,
            heart_rate=self._shown_hr if self._leads_on else 0,
            respiration_rate=self._shown_rr,
        )

    def _breathe(self) -> None:
        self._breath_phase += self.respiration_rate / 60 / SAMPLE_RATE_HZ
        if self._breath_phase >= 1:
            self._breath_phase -= 1
            self._breaths += 1
            if self._breaths >= RR_BREATHS and self._packet_index >= RR_AFTER_PACKETS:
                self._shown_rr = self.respiration_rate + self._rng.randint(-1, 1)
        if self._packet_index % BIOZ_EVERY == 1:
            self._bioz = round(BIOZ_DC + BIOZ_AMPLITUDE * math.sin(2 * math.pi * self._breath_phase))
