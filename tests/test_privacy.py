"""The raw resident identifier never leaves the gateway process.

hut-sim plays a pulse oximeter on a pty; hut-gateway (logging at DEBUG) reads it; a resident's session
starts with a resident ID number, either through the kiosk's loopback API or scanned by hut-sim into the
gateway's card scanner (a second pty), as a resident's health card would be. Then every message on the wire,
every byte of the gateway's spool and state, every log line of the gateway and the collector, and the
database are searched for the identifier: it is nowhere. Its pseudonym is where it should be: on the
readings taken during the session, and only on those.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import aiomqtt
import pytest

from healthhut.devstack import LocalStack, free_port
from healthhut.devstack.programs import Programs
from healthhut.protocol import ObservationBatch, decode
from healthhut.protocol.pseudonym import PseudonymKey, generate_key_file
from tests.conftest import born_months_ago, eventually

BIRTH = born_months_ago(7)  # an infant
# The format of a resident ID number (made up): region, birth date, sequence, check character.
RESIDENT = f"110105{BIRTH:%Y%m%d}004X"
FORMS = [RESIDENT, RESIDENT.lower(), RESIDENT[:-1]]  # the identifier, as typed, and its digits alone


@pytest.mark.parametrize("source", ["kiosk", "scanner"])
async def test_the_raw_identifier_is_nowhere_but_its_pseudonym_is_on_the_session_readings(
    stack: LocalStack, tmp_path: Path, unique: str, source: str
) -> None:
    hut, db = f"hut-{unique}", f"priv_{unique}"
    key_file = tmp_path / "pseudonym.key"
    generate_key_file(key_file)
    pseudonym = PseudonymKey.load(key_file).pseudonym(RESIDENT)
    kiosk_port = free_port()
    (tmp_path / "collector.toml").write_text(
        f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "c-{hut}"\nshare_group = "g{hut}"\nsession_expiry_s = 30\n'
        f'[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\ndatabase = "{db}"\n'
        f'[dead_letters]\npath = "{tmp_path / "dead.sqlite"}"\n'
    )
    (tmp_path / "gateway.toml").write_text(
        f'hut_id = "{hut}"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        f"[uplink]\nbatch_interval_s = 0.5\n"
        f'[identity]\nkey_file = "{key_file}"\nkiosk_port = {kiosk_port}\n'
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp_path / "ox"}"\n'
        f"report_interval_s = 1\nstrip_seconds = 2\n"
        f'[[devices]]\ndriver = "id-scanner"\nname = "cards"\npath = "{tmp_path / "cards"}"\n'
    )
    wire: list[bytes] = []
    batches: list[ObservationBatch] = []

    async with aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as observer:
        await observer.subscribe("hh/v1/#", qos=1)

        async def watch() -> None:
            async for message in observer.messages:
                payload = bytes(message.payload)  # type: ignore[arg-type]
                wire.append(payload)
                if str(message.topic) == f"hh/v1/huts/{hut}/obs":
                    decoded = decode("obs", payload)
                    assert isinstance(decoded, ObservationBatch)
                    batches.append(decoded)

        watcher = asyncio.create_task(watch())
        with Programs(tmp_path / "logs") as programs:
            programs.start("collector", "hut-collector", "run", "--config", str(tmp_path / "collector.toml"))
            await asyncio.to_thread(programs.wait_for_log, "collector", "subscribed")
            programs.start("sim", "hut-sim", "play", "contec-cms50", "--link", str(tmp_path / "ox"), "-q")
            if source == "scanner":
                # The scanner's pty is there before the gateway starts, so the gateway opens it at once (an
                # absent device is retried with a backoff of up to 10 s), and the code is typed only after
                # the anonymous readings below.
                scan = ["--link", str(tmp_path / "cards"), "--code", RESIDENT, "--interval", "20", "--hold", "1"]
                scanner = programs.start("scanner", "hut-sim", "scan", *scan)
                await asyncio.to_thread(programs.wait_for_log, "scanner", "scanner on")
            programs.start(
                "gateway", "hut-gateway", "run", "--config", str(tmp_path / "gateway.toml"), "--log-level", "debug"
            )
            await asyncio.to_thread(programs.wait_for_log, "gateway", "kiosk API")

            def tagged() -> list[str | None]:
                return [o.subject.pseudonym if o.subject else None for b in batches for o in b.observations]

            await eventually(lambda: len(tagged()) >= 2, within=30)  # anonymous readings before the session
            url = f"http://127.0.0.1:{kiosk_port}/v1/session"
            async with aiohttp.ClientSession() as http:
                if source == "kiosk":
                    body = {"resident_id": RESIDENT, "birth_date": BIRTH.isoformat(), "sex": "female"}
                    async with http.post(url, json=body) as response:
                        assert response.status == 201, await response.text()
                else:
                    opened = [p for p in wire if b'"connected"' in p and b'"id-scanner"' in p]
                    assert opened, "the gateway had not opened the card scanner before its code was typed"
                    assert await asyncio.to_thread(scanner.wait, 60) == 0, programs.log("scanner")
                await eventually(lambda: tagged().count(pseudonym) >= 3, within=30)
                async with http.delete(url) as response:
                    assert response.status == 200
            during = len(tagged())
            await eventually(lambda: len(tagged()) >= during + 3 and tagged()[-1] is None, within=30)
            assert programs.stop("gateway") == 0
            await asyncio.sleep(1.0)
            watcher.cancel()
            logs = "".join(programs.log(name, tail=10_000_000) for name in ("gateway", "collector", "sim"))
            if source == "scanner":
                # The scanner's own log is the technician's tool: it may say that it typed, never what.
                logs += programs.log("scanner", tail=10_000_000)

    # Before the session and after it: anonymous. During it: the pseudonym and the infant's age band.
    sequence = tagged()
    assert sequence[0] is None and sequence[-1] is None and pseudonym in sequence
    profiles = {(o.subject.age_band, o.subject.sex) for b in batches for o in b.observations if o.subject}
    # The kiosk gave the infant's profile; a card without a roster admits its resident with none.
    assert profiles == ({("7m", "female")} if source == "kiosk" else {(None, "unknown")})
    assert "DEBUG" in logs  # the gateway did log at DEBUG

    stored = [path.read_bytes() for path in (tmp_path / "state").rglob("*") if path.is_file()]
    subject_tags = stack.influxd.query('SHOW TAG VALUES FROM "spo2" WITH KEY = "subject"', db=db)
    database = str(subject_tags)
    assert pseudonym in database
    for form in FORMS:
        assert not any(form.encode() in payload for payload in wire), "identifier on the wire"
        assert not any(form.encode() in blob for blob in stored), "identifier in the spool or state"
        assert form not in logs, "identifier in a log"
        assert form not in database, "identifier in the database"
