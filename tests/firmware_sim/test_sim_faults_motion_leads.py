"""hut-sim's signal faults, leads off and movement, judged by the real gateway: the HealthyPi streams' bytes go
through the driver's codec and the gateway's strip analysis (gateway.checks, gateway.dsp), which must flag
them as a hut would, and must not flag the same resident keeping still."""

from __future__ import annotations

import pytest

from healthhut.drivers.healthypi import HealthyPi5Decoder, HealthyPiDecoder
from healthhut.drivers.healthypi.codec import PACKET_LEN, parse_packet
from healthhut.firmware_sim.cli import main
from healthhut.firmware_sim.encoders.healthypi import IR_DC, IR_PERFUSION
from healthhut.firmware_sim.faults import FAULTS, Fault, signal_faults_at
from healthhut.firmware_sim.players import PLAYERS, FrameSource, show_signal_fault
from healthhut.firmware_sim.progress import Progress
from healthhut.firmware_sim.scenarios import SCENARIOS
from healthhut.firmware_sim.serial_play import CHUNKS_PER_SECOND, StreamFaults
from healthhut.gateway.checks import StripAnalysis, analyse_strip
from healthhut.protocol import Flag, Kind, Reading

QUIET = Progress(quiet=True)
RESIDENT = SCENARIOS["normal-adult"]


def play(board: str, faults: frozenset[Fault], seconds: float, seed: int = 1) -> tuple[list[Reading], bytes]:
    """What the gateway's decoder reads from ``board`` played for ``seconds`` with ``faults``, scheduled by
    the player's own fault clock at its own pace (a chunk of frames every 1/CHUNKS_PER_SECOND s)."""
    player = PLAYERS["healthypi"].for_protocol(board)
    source = player.new_source(RESIDENT, seed)
    schedule = StreamFaults(player, source, faults, QUIET)
    decoder = HealthyPiDecoder() if board == "v4" else HealthyPi5Decoder()
    sent, wire = 0, bytearray()
    for tick in range(1, round(seconds * CHUNKS_PER_SECOND) + 1):
        elapsed = tick / CHUNKS_PER_SECOND
        schedule.at(elapsed)
        due = int(elapsed * player.frames_per_second)
        wire += source.frames(due - sent)
        sent = due
    return decoder.feed(bytes(wire)), bytes(wire)


async def analysed(readings: list[Reading], kind: Kind) -> list[tuple[Reading, StripAnalysis]]:
    out = []
    for reading in readings:
        if reading.kind is kind and reading.strip is not None:
            analysis = await analyse_strip(reading)
            assert analysis is not None
            out.append((reading, analysis))
    return out


def test_the_schedule_starts_clean_then_takes_the_leads_off_4_s_in_10() -> None:
    both = {Fault.LEADS_OFF, Fault.MOTION}
    assert [signal_faults_at(both, t) for t in (0.0, 4.9)] == [frozenset()] * 2
    assert signal_faults_at(both, 5.0) == signal_faults_at(both, 8.9) == frozenset(both)
    assert signal_faults_at(both, 9.0) == signal_faults_at(both, 14.9) == {Fault.MOTION}
    assert signal_faults_at(both, 15.0) == frozenset(both)
    assert signal_faults_at({Fault.LEADS_OFF}, 605.0) == {Fault.LEADS_OFF}
    assert signal_faults_at({Fault.GARBAGE}, 6.0) == frozenset()


def test_faults_are_listed_for_the_serial_links_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert FAULTS[Fault.LEADS_OFF].links == FAULTS[Fault.MOTION].links == {"pty", "serial"}
    assert PLAYERS["healthypi"].serial_faults >= {Fault.LEADS_OFF, Fault.MOTION}
    assert PLAYERS["healthypi"].for_protocol("v5").serial_faults >= {Fault.LEADS_OFF, Fault.MOTION}
    # A whole hut over MQTT plays frames without the player's signal schedule, so it does not offer them.
    assert not PLAYERS["healthypi"].faults & {Fault.LEADS_OFF, Fault.MOTION}
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    healthypi = out.split("healthypi ", 1)[1].split("\n")[2]
    assert healthypi.split("faults:")[1].strip() == "garbage, leads-off, motion, out-of-range, unplug-mid-frame"
    for args, message in (
        (["play", "contec-cms50", "--fault", "motion"], "--fault motion: contec-cms50 cannot show it"),
        (["play", "healthypi", "--link", "mqtt", "--hut-id", "h1", "--fault", "leads-off"], "not on the mqtt link"),
    ):
        assert main(args) == 2
        assert message in capsys.readouterr().err


def test_a_source_that_cannot_show_a_fault_says_so() -> None:
    cms50 = PLAYERS["contec-cms50"].new_source(RESIDENT, 1)
    with pytest.raises(TypeError, match="Cms50Stream cannot show leads-off"):
        show_signal_fault(cms50, Fault.LEADS_OFF, True)


async def test_leads_off_on_the_v4_is_the_boards_own_lead_status_and_the_gateway_refuses_each_strip() -> None:
    readings, wire = play("v4", frozenset({Fault.LEADS_OFF}), 40)
    packets = [parse_packet(wire[i : i + PACKET_LEN]) for i in range(0, len(wire), PACKET_LEN)]
    off = [p for p in packets if p.lead_status]
    # 4 s of every 10 from 5 s on: 5-9, 15-19, 25-29, 35-39 s at 125 packets a second.
    assert len(off) == 4 * 4 * 125
    assert {(p.lead_status, p.ecg, p.respiration, p.heart_rate, p.respiration_rate) for p in off} == {
        (0x0C, 0, 0, 0, 0)
    }
    strips = await analysed(readings, Kind.ECG)
    assert len(strips) == 4
    for reading, analysis in strips:
        assert reading.flags == {Flag.LEAD_OFF}
        assert Flag.LEAD_OFF in analysis.verdict.flags and not analysis.verdict.fit_for_alerting
    # The board shows no heart rate while the leads are off, so no heart-rate reading says "lead off".
    assert all(Flag.LEAD_OFF not in r.flags for r in readings if r.kind is Kind.HEART_RATE)


async def test_leads_off_on_the_v5_shows_as_a_flat_line_the_gateway_finds() -> None:
    readings, _ = play("v5", frozenset({Fault.LEADS_OFF}), 40)
    strips = await analysed(readings, Kind.ECG)
    assert len(strips) == 4
    for reading, analysis in strips:
        # No lead status travels in a v5 packet: the flag is the gateway's own finding.
        assert reading.flags == frozenset()
        assert Flag.LEAD_OFF in analysis.verdict.flags and not analysis.verdict.fit_for_alerting


@pytest.mark.parametrize("board", ["v4", "v5"])
async def test_the_same_resident_keeping_still_gives_strips_fit_for_alerting(board: str) -> None:
    readings, _ = play(board, frozenset(), 40)
    for kind in (Kind.ECG, Kind.PPG):
        strips = await analysed(readings, kind)
        assert strips and all(a.verdict.fit_for_alerting for _, a in strips), [a.verdict for _, a in strips]
        assert not any(Flag.MOTION_ARTIFACT in a.verdict.flags for _, a in strips)


@pytest.mark.parametrize("board", ["v4", "v5"])
async def test_movement_makes_the_gateway_flag_motion_artifact(board: str) -> None:
    # 5 s still, then 55 s of fidgeting: the strips from 10 s on are all moved.
    readings, _ = play(board, frozenset({Fault.MOTION}), 60)
    ppg = (await analysed(readings, Kind.PPG))[2:]
    ecg = (await analysed(readings, Kind.ECG))[1:]
    assert len(ppg) == 10 and len(ecg) == 5
    # Not one moved strip may pass as fit for alerting: a clinician would be told about movement.
    assert [a.verdict.fit_for_alerting for _, a in ppg + ecg] == [False] * 15
    # Most say why: movement. The others fail the quality indices without the movement's signature
    # (a basSQI above 0.9, or pulses of a regular size), which keeps them from alerting just the same.
    assert sum(Flag.MOTION_ARTIFACT in a.verdict.flags for _, a in ppg) >= 7
    assert sum(Flag.MOTION_ARTIFACT in a.verdict.flags for _, a in ecg) >= 2
    assert all(Flag.LOW_SIGNAL_QUALITY in a.verdict.flags for _, a in ppg + ecg)
    # Movement must not pass for a rhythm: no AF, no pause.
    assert not any(a.verdict.findings for _, a in ecg)


def test_movement_swings_the_light_beyond_any_pulse_and_stops_with_the_resident() -> None:
    source = PLAYERS["healthypi"].new_source(RESIDENT, 3)
    still = PLAYERS["healthypi"].new_source(RESIDENT, 3)

    def ir(stream: FrameSource, packets: int) -> list[int]:
        wire = stream.frames(packets)
        return [parse_packet(wire[i : i + PACKET_LEN]).ppg_ir for i in range(0, len(wire), PACKET_LEN)]

    # Until the resident moves, the stream is the one it always was.
    assert ir(source, 500) == ir(still, 500)
    pulse = IR_DC * IR_PERFUSION
    show_signal_fault(source, Fault.MOTION, True)
    moving = ir(source, 1250)
    assert max(moving) - min(moving) > 2 * pulse
    show_signal_fault(source, Fault.MOTION, False)
    resting = ir(source, 1250)
    assert IR_DC - 1.2 * pulse < min(resting) and max(resting) < IR_DC + 0.2 * pulse
