"""``deploy/haproxy.cfg`` in front of two real nodes: a charger connects through HAProxy, its
node is killed (-9), HAProxy cuts the session, and the charger is back on the other node.

The configuration is the shipped one with only the addresses put in (127.0.0.1 and the
nodes' free ports instead of node1..node3). HAProxy comes from Debian (``.ci/run`` installs
it); without it the test skips, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
from pathlib import Path

import pytest
import websockets

from tests.conftest import PASSWORD, RawCharger, basic_auth, wait_for
from tests.helpers import REPO_ROOT, api_client, events_of
from tests.pg import unavailable
from tests.test_cluster import nodes

pytestmark = pytest.mark.timeout(90)
BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port(url: str) -> int:
    match = re.search(r":(\d+)", url.split("//", 1)[1])
    assert match is not None, url
    return int(match.group(1))


def configured(ocpp_port: int, api_port: int, servers: list[tuple[int, int]]) -> str:
    """The shipped configuration with these addresses; nodes beyond ``servers`` removed."""
    text = (REPO_ROOT / "deploy" / "haproxy.cfg").read_text()
    text = text.replace("bind :9000", f"bind 127.0.0.1:{ocpp_port}")
    text = text.replace("bind :8080", f"bind 127.0.0.1:{api_port}")
    for n in (1, 2, 3):
        if n <= len(servers):
            ocpp, api = servers[n - 1]
            text = text.replace(
                f"node{n}:9000 check port 8080", f"127.0.0.1:{ocpp} check port {api}"
            )
            text = text.replace(f"node{n}:8080 check", f"127.0.0.1:{api} check")
        else:
            text = re.sub(rf"\n\s*server node{n} .*", "", text)
    assert "node1:" not in text and ":9000" not in text, text
    return text


@contextlib.asynccontextmanager
async def haproxy(config: Path):
    binary = shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    if binary is None:
        unavailable("HAProxy is not installed (apt-get install haproxy; .ci/run does)")
    check = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        "-f",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await check.communicate()
    assert check.returncode == 0, out.decode()
    process = await asyncio.create_subprocess_exec(
        binary,
        "-db",
        "-f",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        await process.wait()


async def test_haproxy_moves_a_killed_node_s_charger_to_the_survivor(
    tmp_path: Path, pg_url: str
) -> None:
    async with nodes(tmp_path, pg_url, 2) as cluster:
        ocpp_port, api_port = _free_port(), _free_port()
        servers = [(_port(n.ocpp_url), _port(n.api_url)) for n in cluster]
        config = tmp_path / "haproxy.cfg"
        config.write_text(configured(ocpp_port, api_port, servers))
        async with haproxy(config), api_client(f"http://127.0.0.1:{api_port}") as api:

            async def both_up() -> bool:
                try:
                    health = await api.get("/api/v1/health")
                except Exception:
                    return False
                return len(health["nodes"]) == 2

            await wait_for(both_up, timeout=10)
            await api.post("/api/v1/chargers", {"id": "CP-H", "password": PASSWORD})

            async def connect() -> RawCharger:
                return RawCharger(
                    await websockets.connect(
                        f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-H",
                        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                        additional_headers=basic_auth("CP-H", PASSWORD),
                        open_timeout=5,
                    )
                )

            charger = await connect()
            assert (await charger.call("BootNotification", BOOT))[0] == 3
            holder = (await api.get("/api/v1/chargers/CP-H"))["node"]
            victim = next(
                n
                for n, node_id in zip(cluster, ("node-1", "node-2"), strict=True)
                if node_id == holder
            )
            victim.kill()
            await victim.wait()
            # The session ends with the node's socket (or, for a node that hangs instead,
            # when HAProxy's health check has failed twice, 2 s apart).
            await asyncio.wait_for(charger.ws.wait_closed(), 15)
            again = await connect()
            assert (await again.call("BootNotification", BOOT))[0] == 3

            async def elsewhere() -> bool:
                try:  # until HAProxy marks the dead node down, a call may reach it (503)
                    node = (await api.get("/api/v1/chargers/CP-H"))["node"]
                except Exception:
                    return False
                return node not in (None, holder)

            await wait_for(elsewhere, timeout=10)
            await again.close()
            survivor = next(n for n in cluster if n is not victim)
            async with api_client(survivor.api_url) as direct:
                ends: list[str] = []

                async def both_ends() -> bool:
                    nonlocal ends
                    events = await events_of(direct, "CP-H")
                    sequences = [e["sequence"] for e in events]
                    assert sequences == list(range(1, len(sequences) + 1))
                    ends = [
                        e["data"]["reason"] for e in events if e["type"] == "charger.disconnected"
                    ]
                    return len(ends) >= 2

                await wait_for(both_ends, timeout=10)
            # The dead node's socket ended once: recorded as replaced by the survivor's connect,
            # or as node_lost by its sweep if that came first; then the charger's own close.
            assert ends[0] in ("replaced", "node_lost") and ends[1:] == ["closed"], ends
