"""No bearer secret in any log file: a real `palaver run api ingest store` process, logging as in
production (uvicorn's access lines included), serves a whole session (registration, tokens, refresh, a
browser sign-in, a meeting, tickets for both sockets, a token put in a URL by a careless client, a reused
ticket) and then every file it wrote under its data dir is searched for every password, token, cookie and
ticket of that session."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from palaver.demo.accounts import create_meeting, sign_up
from tests.integration.conftest import _wait_http, child_env, make_settings
from tests.integration.infra import Infra

pytestmark = pytest.mark.integration

PASSWORD = "a secret phrase for the logs"
HEADER = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}


async def _socket(url: str, ingest: bool) -> int | None:
    """Open, say hello (ingest: the header, 100 ms of audio, end), read until closed; the close code."""
    async with websockets.connect(url) as ws:
        try:
            if ingest:
                await ws.send(orjson.dumps(HEADER).decode())
                await ws.send(b"\x00\x00" * 1600)
                await ws.send(orjson.dumps({"type": "end"}).decode())
            while True:
                await asyncio.wait_for(ws.recv(), timeout=5)
        except (websockets.ConnectionClosed, TimeoutError):
            return ws.close_code


async def test_no_password_token_cookie_or_ticket_reaches_a_log_file(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tag = uuid.uuid4().hex[:10]
    data_dir = tmp_path_factory.mktemp(f"logs-{tag}")
    settings = make_settings(infra, data_dir, f"t{tag}", f"t_{tag}")
    env = {**child_env(settings), "PALAVER_API_PORT": str(settings.api_port)}
    env.pop("PALAVER_CLICKHOUSE_URL", None)  # its own chdb in its data dir (one process per chdb dir)
    log_file = data_dir / "logs" / "web.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        web = subprocess.Popen([sys.executable, "-m", "stack", "run", "api", "ingest", "store"], stdout=out,
                               stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{settings.api_port}"
    ws_url = url.replace("http://", "ws://")
    secrets: dict[str, str] = {"password": PASSWORD}
    try:
        await _wait_http(url, timeout_s=120)
        ana = await sign_up(url, f"ana-{tag}", PASSWORD)
        secrets["access token"] = ana.access_token
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            tokens = (await http.post("/v1/auth/token", data={"username": ana.username, "password": PASSWORD})).json()
            secrets |= {"second access token": tokens["access_token"], "refresh token": tokens["refresh_token"]}
            refreshed = await http.post("/v1/auth/token", data={"grant_type": "refresh_token",
                                                                "refresh_token": tokens["refresh_token"]})  # fmt: skip
            secrets["refreshed token"] = refreshed.json()["access_token"]
            # A careless client puts its token in the URL: the access log must not keep it.
            await http.get("/v1/me", params={"access_token": tokens["access_token"], "token": tokens["refresh_token"]})
            login = await http.post("/v1/auth/login", json={"username": ana.username, "password": PASSWORD})
            secrets |= {"session cookie": http.cookies["palaver_session"], "csrf token": login.json()["csrf_token"]}
            wrong = await http.post("/v1/auth/token", data={"username": ana.username, "password": PASSWORD + "x"})
            assert wrong.status_code == 401
        meeting_id = await create_meeting(ana, "Logs")
        ingest_ticket = await ana.ticket(meeting_id)
        live_ticket = await ana.ticket(meeting_id, "live")
        secrets |= {"ingest ticket": ingest_ticket, "live ticket": live_ticket}
        stream = f"{ws_url}/v1/meetings/{meeting_id}/stream?ticket={ingest_ticket}"
        assert await _socket(stream, ingest=True) == 1000
        assert await _socket(stream, ingest=True) == 4401, "a used ticket is refused (and that is logged)"
        await _socket(f"{ws_url}/v1/meetings/{meeting_id}/live?ticket={live_ticket}", ingest=False)
    finally:
        web.terminate()
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            web.kill()

    logs = {p: p.read_text(errors="replace") for p in Path(data_dir).rglob("*.log")}
    written = "\n".join(logs.values())
    assert "/stream?ticket=***" in written, "the access log saw the socket's URL, redacted"
    assert "/live?ticket=***" in written and "access_token=***" in written, written[-3000:]
    leaks = [f"{what} in {path}" for path, text in logs.items() for what, value in secrets.items() if value in text]
    assert leaks == [], leaks
    assert os.path.getsize(log_file) > 0
