"""One supervised session per configured device: open, decode, turn readings into observations.

The session owns its reconnect loop. An unplug or an open failure becomes a ``disconnected`` event and
a backoff; frame errors are counted and reported as ``device_error`` events, never as readings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from healthhut.drivers import DeviceConfig, DriverSpec, GattDecoder, IdentityDecoder, StreamDecoder
from healthhut.drivers.gatt.racp import (
    RECORD_ACCESS_CONTROL_POINT,
    OpCode,
    RacpValue,
    ResponseCode,
    racp_report_after,
    racp_report_all,
)
from healthhut.gateway.backoff import Backoff
from healthhut.gateway.checks import RhythmHistory, Verdict, analyse_strip, check_spot
from healthhut.gateway.clock import ClockCheck, RecordClock
from healthhut.gateway.identity import SessionBook
from healthhut.gateway.outbox import Outbox
from healthhut.gateway.state import GatewayState
from healthhut.gateway.transports import (
    BleCentral,
    BleConnected,
    BleDisconnected,
    BleEvent,
    BleValue,
    ByteStream,
    TransportError,
    open_evdev,
    open_serial,
    run_ble_device,
)
from healthhut.protocol import Device, Flag, Kind, Reading, Subject, observation_from_reading, strip_from_reading
from healthhut.protocol.pseudonym import PseudonymKey

log = logging.getLogger(__name__)

ERROR_REPORT_INTERVAL_S = 10.0
# Strips are re-anchored to arrival time when the device's pace and ours differ by more than this.
STRIP_DRIFT_LIMIT = timedelta(seconds=1)
# A reading with one of these says nobody is on the device: its measurement run has ended.
NOBODY_ATTACHED = frozenset({Flag.FINGER_OUT, Flag.LEAD_OFF})
# RACP answers that end a Report Stored Records in full: every record the meter held was sent.
TRANSFER_COMPLETE = frozenset({ResponseCode.SUCCESS, ResponseCode.NO_RECORDS_FOUND})


class DeviceSession:
    """Reads one device for as long as the gateway runs."""

    def __init__(
        self,
        config: DeviceConfig,
        spec: DriverSpec,
        *,
        hut_id: str,
        state: GatewayState,
        outbox: Outbox,
        clock_check: ClockCheck | None = None,
        mains_hz: float = 50.0,
        central: BleCentral | None = None,
        residents: SessionBook | None = None,
        pseudonyms: PseudonymKey | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.spec = spec
        self.hut_id = hut_id
        self.state = state
        self.outbox = outbox
        self.clock = clock
        self.clock_check = clock_check or ClockCheck(timedelta(seconds=300))
        self.mains_hz = mains_hz
        self.central = central
        self.residents = residents
        self.pseudonyms = pseudonyms
        self.device = Device(driver=spec.name, device_id=config.name)
        self.report_interval = float(getattr(config, "report_interval_s", 0.0))
        self.readings = 0
        # For the technician (hut-gateway status, the retained status): counts and what went wrong last,
        # in words that name the problem, never a value.
        self.errors = 0
        self.last_error: str | None = None
        self.last_contact: datetime | None = None
        self.connected = False
        self._last_report: dict[Kind, float] = {}
        # Rhythm over consecutive ECG strips, and a number for each continuous recording.
        self._rhythm = RhythmHistory()
        self._recording = 0
        # Where the next clockless strip starts: strips of one connection follow each other exactly.
        self._next_strip_start: dict[str, datetime] = {}
        # A device that keeps records: its clock is judged per RACP transfer, whose readings wait for its end.
        self.record_clock = RecordClock(self.clock_check, started_at=clock())
        self._transfer: list[tuple[Reading, datetime]] = []
        # The device's measurement run: from when it began to send after a silence (or connected), until it
        # goes quiet, disconnects or says nobody is on it. Who it measures is settled by the run's start too.
        self._run_began: datetime | None = None
        self._last_heard: datetime | None = None

    async def _open(self) -> ByteStream:
        path = getattr(self.config, "path", None)
        if self.spec.transport == "evdev" and isinstance(path, str):
            return await open_evdev(path)
        link = self.spec.serial_link(self.config)
        if link is None or not isinstance(path, str):
            raise TransportError(self.config.name, f"transport {self.spec.transport!r} is not available yet")
        return await open_serial(path, link.settings)

    async def run(self) -> None:
        if self.spec.transport == "ble":
            await self._run_ble()
            return
        backoff = Backoff(0.2, 10.0)
        failures = 0
        while True:
            try:
                stream = await self._open()
            except TransportError as exc:
                failures += 1
                # Say it once, then quietly keep trying: an absent device is normal between uses.
                if failures == 1:
                    log.warning("device %s not available: %s", self.config.name, exc)
                    self._note_error(f"not available: {exc}")
                await backoff.wait()
                continue
            failures = 0
            backoff.reset()
            self.connected = True
            self._next_strip_start.clear()
            self._run_starts(self.clock())
            await self.outbox.event("connected", self.device)
            try:
                await self._read(stream)
            except TransportError as exc:
                log.warning("device %s disconnected: %s", self.config.name, exc)
                self._note_error(f"disconnected: {exc}", count=0)
            finally:
                self.connected = False
                self._run_ends()
                await stream.close()
            await self.outbox.event("disconnected", self.device)
            await backoff.wait()

    async def _run_ble(self) -> None:
        """A BLE device: the transport connects whenever it advertises and hands over characteristic
        values, which the driver's GATT decoder turns into readings."""
        if self.central is None:
            raise TransportError(self.config.name, "BLE devices need the gateway's BLE central")
        decoder = self.spec.decoder(self.config)
        if not isinstance(decoder, GattDecoder):
            raise TransportError(self.config.name, f"driver {self.spec.name} does not decode GATT values")
        events: asyncio.Queue[BleEvent] = asyncio.Queue()

        def racp_command() -> bytes | None:
            # Only what is new since the last record this gateway saw (all of them after a restart:
            # records keep their device timestamps, so their observation ids deduplicate them).
            last = getattr(decoder, "last_sequence_number", None)
            return racp_report_all() if last is None else racp_report_after(last)

        link = asyncio.create_task(
            run_ble_device(
                self.spec,
                self.config,
                self.central,
                lambda characteristic, data: events.put_nowait(BleValue(characteristic, data)),
                on_event=events.put_nowait,
                racp_command=racp_command if self.keeps_records else None,
            ),
            name=f"ble-link:{self.config.name}",
        )
        try:
            while True:
                event = await events.get()
                await self._ble_event(event, decoder)
        finally:
            link.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link

    async def _ble_event(self, event: BleEvent, decoder: GattDecoder) -> None:
        if isinstance(event, BleValue):
            now = self.last_contact = self.clock()
            self._heard(now)
            errors = decoder.frame_errors
            readings = decoder.on_value(event.characteristic, event.data)
            if self.keeps_records:
                # A record's clock is judged with the whole transfer (RecordClock): it waits for the answer.
                self._transfer.extend((reading, now) for reading in readings)
                if event.characteristic == RECORD_ACCESS_CONTROL_POINT:
                    answered = decoder.frame_errors == errors and _transfer_complete(decoder)
                    await self._settle_transfer(now, complete=answered)
            else:
                for reading in readings:
                    await self.handle(reading)
            if decoder.frame_errors > errors:
                self._note_error("malformed values", decoder.frame_errors - errors)
                await self.outbox.event("device_error", self.device, malformed_values=decoder.frame_errors - errors)
        elif isinstance(event, BleConnected):
            self.connected = True
            self._next_strip_start.clear()
            self._run_starts(self.clock())
            await self.outbox.event("connected", self.device)
        elif isinstance(event, BleDisconnected):
            self.connected = False
            self._run_ends()
            # A measurement held back for its context (glucose) must not be lost with the link.
            flush = getattr(decoder, "flush", None)
            held = flush() if callable(flush) else []
            if self.keeps_records:
                now = self.clock()
                self._transfer.extend((reading, now) for reading in held)
                await self._settle_transfer(now, complete=False)
            else:
                for reading in held:
                    await self.handle(reading)
            await self.outbox.event("disconnected", self.device)
        elif event.failures in (3, 10) or event.failures % 50 == 0:
            # A device that keeps failing is a job for a technician; say so, but not on every attempt.
            self._note_error(f"{event.failures} failed connection attempts in a row")
            await self.outbox.event("device_error", self.device, connect_failures=event.failures)

    async def _settle_transfer(self, now: datetime, *, complete: bool) -> None:
        """Judge the clock of the records that arrived since the last RACP answer, then spool them."""
        records, self._transfer = self._transfer, []
        if not records and not complete:
            return
        verdicts = self.record_clock.judge(
            [(r.measured_at, at, Flag.CLOCK_UNVERIFIED in r.flags) for r, at in records],
            complete=complete,
            ended_at=now,
        )
        for (reading, arrived), clock_flags in zip(records, verdicts, strict=True):
            await self.handle(reading, received_at=arrived, clock_flags=clock_flags)

    def _note_error(self, what: str, count: int = 1) -> None:
        self.errors += count
        self.last_error = what[:200]

    def _run_starts(self, now: datetime) -> None:
        self._run_began = self._last_heard = now

    def _run_ends(self) -> None:
        self._run_began = self._last_heard = None

    def _heard(self, now: datetime) -> None:
        """The device sent something: it continues its run, or begins one after a silence. (Runs matter
        only for whose readings these are: without sessions there is nothing to keep.)"""
        if self.residents is None:
            return
        if self._last_heard is None or now - self._last_heard > self.residents.ambiguity:
            self._run_began = now
        self._last_heard = now

    async def _read(self, stream: ByteStream) -> None:
        decoder = self.spec.decoder(self.config)
        if self.spec.role == "identity":
            assert isinstance(decoder, IdentityDecoder)
            await self._scan(stream, decoder)
            return
        if not isinstance(decoder, StreamDecoder):
            raise TransportError(self.config.name, f"driver {self.spec.name} does not decode a byte stream")
        link = self.spec.serial_link(self.config)
        if link is not None and link.start_command:
            await stream.write(link.start_command)
        keepalive: asyncio.Task[None] | None = None
        if link is not None and link.keepalive and link.keepalive_interval_s > 0:
            keepalive = asyncio.create_task(
                self._keep_alive(stream, link.keepalive, link.keepalive_interval_s),
                name=f"keepalive:{self.config.name}",
            )
        try:
            # A failing keep-alive write shows up as a failing read too; the read loop reports it.
            await self._decode(stream, decoder)
        finally:
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError, TransportError):
                    await keepalive

    @staticmethod
    async def _keep_alive(stream: ByteStream, command: bytes, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await stream.write(command)

    async def _decode(self, stream: ByteStream, decoder: StreamDecoder) -> None:
        next_error_report = time.monotonic() + ERROR_REPORT_INTERVAL_S
        errors_reported = 0  # the decoder, and so its count, is new with each connection
        while True:
            data = await stream.read()
            self.last_contact = self.clock()
            self._heard(self.last_contact)
            for reading in decoder.feed(data):
                await self.handle(reading)
            now = time.monotonic()
            if now >= next_error_report:
                next_error_report = now + ERROR_REPORT_INTERVAL_S
                new_errors = decoder.frame_errors - errors_reported
                if new_errors:
                    errors_reported = decoder.frame_errors
                    log.warning("device %s: %d frame errors in the last interval", self.config.name, new_errors)
                    self._note_error("frame errors", new_errors)
                    await self.outbox.event("device_error", self.device, frame_errors=new_errors)

    async def _scan(self, stream: ByteStream, decoder: IdentityDecoder) -> None:
        """An identity source: each code read starts that resident's session. The code is turned into a
        pseudonym here and goes no further; problems are told to the kiosk without quoting it."""
        while True:
            data = await stream.read()
            self.last_contact = self.clock()
            errors = decoder.frame_errors
            codes = decoder.feed(data)
            if decoder.frame_errors != errors and self.residents is not None:
                what = decoder.errors[-1] if decoder.errors else "an unreadable scan"
                self._note_error(what, decoder.frame_errors - errors)
                self.residents.refuse_scan(self.config.name, what)
            for code in codes:
                self._start_session(code)

    def _start_session(self, code: str) -> None:
        if self.residents is None or self.pseudonyms is None:
            log.warning("device %s: a card was scanned, but [identity] is not configured", self.config.name)
            return
        try:
            pseudonym = self.pseudonyms.pseudonym(code)
        except ValueError as exc:  # its message never quotes the code
            self.residents.refuse_scan(self.config.name, str(exc))
            return
        self.readings += 1
        self.residents.admit_card(pseudonym, f"scanner:{self.config.name}")

    async def handle(
        self, reading: Reading, *, received_at: datetime | None = None, clock_flags: frozenset[Flag] | None = None
    ) -> None:
        """Check one decoded reading and spool it: a strip (and what its analysis found), or a spot
        observation, at most one per report interval. ``received_at`` and ``clock_flags``: when it arrived and
        what is known of its clock, when that was settled before (a stored record, see RecordClock)."""
        now = received_at or self.clock()
        if clock_flags is None:
            clock_flags = self.clock_check.flags(reading.measured_at, now)
        subject, subject_flags = self._attribute(reading, now, clock_flags)
        if reading.flags & NOBODY_ATTACHED:
            self._last_heard = None  # whatever it sends next begins a new run
        clock_flags = clock_flags | subject_flags
        if reading.strip is not None:
            expected = self._next_strip_start.get(reading.strip.channel)
            start = self._strip_start(reading.strip.channel, now, len(reading.strip.raw) / reading.strip.fs)
            contiguous = expected is not None and start == expected
            strip = strip_from_reading(
                reading,
                hut_id=self.hut_id,
                device=self.device,
                received_at=now,
                device_seq=self.state.next_device_seq(self.config.name),
                seq_epoch=self.state.epoch,
                start=start,
                extra_flags=clock_flags,
                subject=subject,
            )
            await self.outbox.strip(strip)
            analysis = await analyse_strip(reading, self.mains_hz)
            if analysis is not None and reading.kind is Kind.ECG:
                if not contiguous:
                    self._recording += 1
                who = subject.pseudonym if subject is not None else None
                analysis = self._rhythm.judge(analysis, (who, reading.strip.channel, self._recording))
            if analysis is not None:
                await self._observe(analysis.summary, analysis.verdict, clock_flags, now, subject)
            return
        stamp = time.monotonic()
        last = self._last_report.get(reading.kind)
        if last is not None and stamp - last < self.report_interval:
            return
        self._last_report[reading.kind] = stamp
        await self._observe(reading, check_spot(reading), clock_flags, now, subject)

    def _attribute(
        self, reading: Reading, now: datetime, clock_flags: frozenset[Flag]
    ) -> tuple[Subject | None, frozenset[Flag]]:
        """The resident this reading belongs to, by its device time when that time is trusted.

        Never a guess (see SessionBook.attribute): a trusted device time may be off by the clock check's
        limit, and a reading of a device that measures live may have been taken at any moment since its
        measurement run began. When that window meets another resident's session, the reading is anonymous
        and flagged subject_conflict."""
        if self.residents is None:
            return None, frozenset()
        untrusted = Flag.CLOCK_UNVERIFIED in clock_flags | reading.flags
        trusted = None if untrusted else reading.measured_at
        if trusted is None and self.keeps_records:
            # A meter's memory holds readings of earlier days, sent again at each connection: without a
            # trusted device time nothing says this one was taken by whoever is signed in now.
            log.warning("device %s: a stored record without a trusted time is kept anonymous", self.config.name)
            return None, frozenset()
        attribution = self.residents.attribute(
            now,
            trusted,
            clock_margin=self.clock_check.max_device_skew,
            # A stored record was not taken during the current run; a live measurement was.
            since=None if self.keeps_records else self._run_began,
        )
        if attribution.conflict:
            log.warning("device %s: a reading between two residents' sessions is kept anonymous", self.config.name)
            return None, frozenset({Flag.SUBJECT_CONFLICT})
        return attribution.subject, frozenset()

    @property
    def keeps_records(self) -> bool:
        """The device keeps a memory of past readings and sends them (a glucose meter's RACP store)."""
        return self.spec.keeps_records

    async def _observe(
        self,
        reading: Reading,
        verdict: Verdict,
        clock_flags: frozenset[Flag],
        now: datetime,
        subject: Subject | None = None,
    ) -> None:
        self.readings += 1
        if not verdict.fit_for_alerting:
            # Reasons name the problem, never the value (no health values at INFO).
            log.info("device %s: reading unfit for alerting (%s)", self.config.name, "; ".join(verdict.reasons))
        await self.outbox.observation(
            observation_from_reading(
                reading,
                hut_id=self.hut_id,
                device=self.device,
                received_at=now,
                device_seq=self.state.next_device_seq(self.config.name),
                seq_epoch=self.state.epoch,
                extra_flags=verdict.flags | clock_flags,
                fit_for_alerting=verdict.fit_for_alerting,
                quality_reasons=verdict.reasons,
                findings=verdict.findings,
                subject=subject,
            )
        )

    def _strip_start(self, channel: str, arrived: datetime, seconds: float) -> datetime:
        """Continue the previous strip's timeline, unless it has drifted from arrival times."""
        by_arrival = arrived - timedelta(seconds=seconds)
        expected = self._next_strip_start.get(channel)
        start = expected if expected is not None and abs(expected - by_arrival) <= STRIP_DRIFT_LIMIT else by_arrival
        self._next_strip_start[channel] = start + timedelta(seconds=seconds)
        return start


def _transfer_complete(decoder: GattDecoder) -> bool:
    """Did the meter's last RACP answer end a Report Stored Records in full?"""
    answer = getattr(decoder, "last_racp_response", None)
    return (
        isinstance(answer, RacpValue)
        and answer.request_op_code == OpCode.REPORT_STORED_RECORDS
        and answer.response_code in TRANSFER_COMPLETE
    )


async def run_forever(sessions: list[DeviceSession]) -> None:
    async with asyncio.TaskGroup() as group:
        for session in sessions:
            group.create_task(session.run(), name=f"device:{session.config.name}")
