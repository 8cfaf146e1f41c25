"""``log.format = "json"``: one JSON object per line, with the ids a line is about, admin API
access lines included; the text format carries the same ids."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp
import websockets

from tests.conftest import PASSWORD, basic_auth

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}
TOKEN = "log-test-token-0123456789"


async def test_json_logs_carry_the_ids_and_the_access_lines(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[ocpp]\nhost = "127.0.0.1"\nport = 0\n'
        f'[api]\nhost = "127.0.0.1"\nport = 0\ntokens = ["{TOKEN}"]\n'
        f'[storage]\nurl = "sqlite:///{tmp_path / "csms.db"}"\n'
        '[log]\nformat = "json"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "csms", "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        urls: dict[str, str] = {}
        while len(urls) < 2:
            line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            assert line, "csms serve exited"
            if "OCPP endpoint" in line:
                urls["ocpp"] = line.split()[-1].removesuffix("/{chargerId}")
            if "admin API" in line:
                urls["api"] = line.split()[-1].removesuffix("/api/v1")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            body = {"id": "CP-LOG", "password": PASSWORD}
            async with session.post(f"{urls['api']}/api/v1/chargers", json=body) as answer:
                assert answer.status == 201
        async with websockets.connect(
            f"{urls['ocpp']}/CP-LOG",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth("CP-LOG", PASSWORD),
        ) as ws:
            await ws.send(json.dumps([2, "b1", "BootNotification", BOOT]))
            await asyncio.wait_for(ws.recv(), 5)
            await ws.send('[2, "x1", "NoSuchAction", {}]')  # logged by the charger's handler
            await asyncio.wait_for(ws.recv(), 5)
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), 20)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "csms.api.access"]
    assert any(
        line["method"] == "POST" and line["path"] == "/api/v1/chargers" and line["status"] == 201
        for line in access
    ), access
    about_charger = [line for line in lines if line.get("chargerId") == "CP-LOG"]
    assert about_charger, lines  # lines logged while serving the charger name it
