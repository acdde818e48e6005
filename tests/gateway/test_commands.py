"""The collector's "please measure again" reaches the real gateway and the kiosk API lists it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import aiomqtt

from healthhut.devstack import LocalStack, free_port
from healthhut.devstack.programs import Programs
from healthhut.protocol import hut_topic
from healthhut.protocol.pseudonym import generate_key_file


async def test_a_remeasure_command_shows_on_the_kiosk_and_garbage_is_ignored(
    stack: LocalStack, tmp_path: Path, unique: str
) -> None:
    hut = f"hut-{unique}"
    key_file = tmp_path / "pseudonym.key"
    generate_key_file(key_file)
    kiosk_port = free_port()
    (tmp_path / "gateway.toml").write_text(
        f'hut_id = "{hut}"\nstate_dir = "{tmp_path / "state"}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        f'[identity]\nkey_file = "{key_file}"\nkiosk_port = {kiosk_port}\n'
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp_path / "absent"}"\n'
    )
    command = {
        "schema": 1,
        "type": "remeasure",
        "reason": "quality",
        "hut_id": hut,
        "kind": "spo2",
        "device": {"driver": "contec-cms50", "device_id": "ox-1"},
        "quality": ["motion_artifact"],
        "message": "请重新测量",
        "message_en": "Please measure again",
    }
    url = f"http://127.0.0.1:{kiosk_port}/v1/prompts"
    with Programs(tmp_path / "logs") as programs:
        programs.start("gateway", "hut-gateway", "run", "--config", str(tmp_path / "gateway.toml"))
        await asyncio.to_thread(programs.wait_for_log, "gateway", "connected to broker")
        async with (
            aiomqtt.Client("127.0.0.1", stack.mosquitto.port) as client,
            aiohttp.ClientSession() as http,
        ):
            await client.publish(hut_topic(hut, "cmd"), b"not json", qos=1)
            await client.publish(hut_topic(hut, "cmd"), json.dumps(command).encode(), qos=1)

            async def prompts() -> list[dict[str, object]]:
                async with http.get(url) as response:
                    assert response.status == 200
                    found: list[dict[str, object]] = (await response.json())["prompts"]
                    return found

            shown: list[dict[str, object]] = []

            async def poll() -> None:
                while not shown:
                    shown.extend(await prompts())
                    await asyncio.sleep(0.2)

            await asyncio.wait_for(poll(), 15)
        log = programs.log("gateway")
    (prompt,) = shown
    assert prompt["message"] == "请重新测量" and prompt["kind"] == "spo2" and prompt["reason"] == "quality"
    assert "malformed command" in log
