"""A whole hut without a broker: devices through their real decoders into numbered wire-protocol messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from healthhut.drivers.contec_cms50 import Cms50Decoder
from healthhut.firmware_sim.faults import SERIAL_FAULT_PERIOD_S, Fault
from healthhut.firmware_sim.gatt_devices import BloodPressureCuff, GlucoseMeter, HeartRateStrap
from healthhut.firmware_sim.hut import GARBAGE_EVERY, GattFeed, HutSimulation, Outgoing, SerialFeed
from healthhut.firmware_sim.players import PLAYERS
from healthhut.firmware_sim.scenarios import SCENARIOS
from healthhut.protocol import (
    Flag,
    Kind,
    ObservationBatch,
    ProtocolError,
    Status,
    WaveBatch,
    decode,
)
from healthhut.protocol.wire import MAX_BATCH

NOW = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)


def decoded(messages: list[Outgoing]) -> list[ObservationBatch | WaveBatch]:
    out = []
    for message in messages:
        batch = decode(message.channel, message.payload)
        assert isinstance(batch, ObservationBatch | WaveBatch)
        out.append(batch)
    return out


def play(sim: HutSimulation, seconds: float, step: float = 0.5) -> list[Outgoing]:
    out: list[Outgoing] = []
    ticks = round(seconds / step)
    for tick in range(1, ticks + 1):
        out += sim.advance(tick * step, NOW + timedelta(seconds=tick * step))
    return out


def test_messages_are_numbered_from_the_will_on_with_one_boot_id() -> None:
    cuff = BloodPressureCuff(SCENARIOS["hypertensive-crisis"], steady=True, interval=2, started_at=NOW)
    sim = HutSimulation("hut-a", [GattFeed("cuff", cuff)], boot_id="boot1")
    will, birth = sim.will(NOW), sim.birth(NOW)
    events = sim.connected_events(NOW)
    data = play(sim, 5)
    goodbye = sim.goodbye(NOW)
    messages = [will, birth, *events, *data, goodbye]
    assert [m.seq for m in messages] == list(range(len(messages)))
    assert [(m.channel, m.retain) for m in (will, birth, goodbye)] == [("status", True)] * 3
    statuses = [decode("status", m.payload) for m in (will, birth, goodbye)]
    assert [(s.state, s.boot_id) for s in statuses if isinstance(s, Status)] == [
        ("offline", "boot1"),
        ("online", "boot1"),
        ("offline", "boot1"),
    ]
    observations = [o for batch in decoded(data) for o in batch.observations]  # type: ignore[union-attr]
    assert [o.values["systolic"].value for o in observations] == [185.0, 185.0, 185.0]
    assert {(o.device.driver, o.device.device_id, o.clock) for o in observations} == {
        ("ble-blood-pressure", "cuff", "device")
    }
    assert [o.device_seq for o in observations] == [0, 1, 2]


def test_a_serial_device_sends_strips_and_one_spot_reading_a_second() -> None:
    player = PLAYERS["contec-cms50"].for_protocol("9-byte")
    sim = HutSimulation("hut-a", [SerialFeed("ox", player, SCENARIOS["hypoxaemia"], seed=1)])
    batches = decoded(play(sim, 21))
    strips = [s for b in batches if isinstance(b, WaveBatch) for s in b.strips]
    observations = [o for b in batches if isinstance(b, ObservationBatch) for o in b.observations]
    # The 9-byte CMS50 streams only after the start command, which the hut sends as its gateway would.
    assert [(s.kind, s.n, s.fs) for s in strips] == [(Kind.PPG, 600, 60.0)] * 2
    assert strips[1].start - strips[0].start == timedelta(seconds=10)
    # The device sends numerics with every frame; the hut keeps one a second, as the gateway does.
    assert len(observations) == 21
    assert all(abs(o.values["spo2"].value - 88) <= 1 for o in observations)  # type: ignore[operator]


def test_serial_value_faults_strike_for_a_second_every_period() -> None:
    player = PLAYERS["contec-cms50"]
    feed = SerialFeed(
        "ox", player, SCENARIOS["normal-adult"], seed=2, faults={Fault.SPECIAL_VALUES, Fault.OUT_OF_RANGE}
    )
    unavailable: list[float] = []
    elapsed = 0.0
    while elapsed < 2.6 * SERIAL_FAULT_PERIOD_S:
        elapsed += 0.1
        if any(Flag.VALUE_UNAVAILABLE in r.flags for r in feed.advance(elapsed)):
            unavailable.append(round(elapsed))
    # The no-value sentinel at 5 s, an SpO2 of 115 % (which the CMS50 driver also leaves out) at 15 s, the
    # sentinel again at 25 s; the hut keeps one reading a second.
    assert unavailable == [5, 15, 25]


def test_the_meter_records_come_once_and_again_with_the_resend_fault() -> None:
    clean = GlucoseMeter(SCENARIOS["hypoglycaemia"], steady=True, interval=2, seed=5, started_at=NOW)
    faulty = GlucoseMeter(
        SCENARIOS["hypoglycaemia"], steady=True, interval=2, seed=5, started_at=NOW, faults={Fault.RESEND_OLD_RECORDS}
    )
    ids = {}
    for name, meter in (("clean", clean), ("faulty", faulty)):
        sim = HutSimulation("hut-a", [GattFeed("meter", meter)], boot_id="b")
        observations = [o for b in decoded(play(sim, 4.5)) for o in b.observations]  # type: ignore[union-attr]
        ids[name] = [o.id for o in observations]
        assert all(o.values["glucose"].value == 3.2 for o in observations)
    # History and three new records, each once; with the fault, every fetch brings the old ones again, with
    # the same observation ids (the collector keeps one of each).
    assert len(ids["clean"]) == len(set(ids["clean"])) == clean.history + 3
    assert set(ids["faulty"]) == set(ids["clean"])
    assert len(ids["faulty"]) > len(ids["clean"])


def test_spot_readings_split_into_batches_of_at_most_500_with_unique_ids() -> None:
    strap = HeartRateStrap(SCENARIOS["tachycardia"], seed=6)
    sim = HutSimulation("hut-a", [GattFeed("strap", strap)], device_clock=False)
    batches = decoded(sim.spots(1200, 1.0, NOW))
    assert [len(b.observations) for b in batches] == [MAX_BATCH, MAX_BATCH, 200]  # type: ignore[union-attr]
    ids = [o.id for b in batches for o in b.observations]  # type: ignore[union-attr]
    assert len(set(ids)) == 1200


def test_load_huts_drop_device_time_stamps_so_each_reading_is_new() -> None:
    cuff = BloodPressureCuff(SCENARIOS["normal-adult"], seed=7, started_at=NOW)
    sim = HutSimulation("hut-a", [GattFeed("cuff", cuff)], device_clock=False)
    observations = [o for b in decoded(sim.spots(20, 1.0, NOW)) for o in b.observations]  # type: ignore[union-attr]
    assert {o.clock for o in observations} == {"gateway"}
    assert len({o.id for o in observations}) == 20


def test_garbage_follows_every_tenth_data_message() -> None:
    strap = HeartRateStrap(SCENARIOS["normal-adult"], seed=8)
    sim = HutSimulation("hut-a", [GattFeed("strap", strap)], faults={Fault.GARBAGE}, seed=8)
    messages = [m for second in range(1, 2 * GARBAGE_EVERY + 1) for m in sim.advance(second, NOW)]
    garbage = [i for i, m in enumerate(messages) if not m.valid]
    assert garbage == [GARBAGE_EVERY, 2 * GARBAGE_EVERY + 1]
    for index in garbage:
        with pytest.raises(ProtocolError) as caught:
            decode("obs", messages[index].payload)
        assert caught.value.reason == "malformed_json"
    assert sim.counters.garbage == 2
    decoded([m for m in messages if m.valid])


def test_the_hut_decodes_with_the_real_driver() -> None:
    # A spot frame of the CMS50 goes through the same decoder the gateway runs.
    frame = PLAYERS["contec-cms50"].spot_frame(SCENARIOS["hypoxaemia"], __import__("random").Random(1))
    [reading] = Cms50Decoder().feed(frame)
    assert abs(reading.values["spo2"].value - 88) <= 1  # type: ignore[operator]
    with pytest.raises(ValueError, match="hut id"):
        HutSimulation("Hut A", [])
