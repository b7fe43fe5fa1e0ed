"""Bearer secrets never reach a log line: uvicorn-shaped records, header lines, tracebacks, and a real uvicorn
server logging through the root handlers the entrypoint sets up."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI, WebSocket
from uvicorn.logging import AccessFormatter

from bench.harness import free_port
from palaver.log_redaction import RedactSecrets, install, redact

TICKET = "tk_9f8e7d6c5b4a39281706"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXZhbHVl"


def record(
    msg: str, *args: object, name: str = "uvicorn.access", exc_info: object = None
) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]


def shown(rec: logging.LogRecord, formatter: logging.Formatter | None = None) -> str:
    assert RedactSecrets().filter(rec) is True, "the filter never drops a record"
    return (formatter or logging.Formatter("%(name)s: %(message)s")).format(rec)


@pytest.mark.parametrize("parameter", ["ticket", "token", "access_token", "refresh_token", "TICKET"])
def test_the_access_log_line_keeps_its_shape_without_the_query_secret(parameter: str) -> None:
    rec = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50312", "GET",
                 f"/v1/meetings/m1/live?since=5&{parameter}={TICKET}&x=1", "1.1", 200)  # fmt: skip
    line = shown(
        rec, AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    )
    assert TICKET not in line
    assert line == f'127.0.0.1:50312 - "GET /v1/meetings/m1/live?since=5&{parameter}=***&x=1 HTTP/1.1" 200 OK'


def test_the_websocket_lines_of_uvicorn_lose_the_ticket() -> None:
    for template in ('%s - "WebSocket %s" [accepted]', '%s - "WebSocket %s" 403'):
        line = shown(
            record(
                template, "127.0.0.1:40000", f"/v1/meetings/m1/streams?ticket={TICKET}", name="uvicorn.error"
            )
        )
        assert TICKET not in line and "/v1/meetings/m1/streams?ticket=***" in line
    line = shown(record('%s - "WebSocket %s" %d', "127.0.0.1:40000", f"/live?token={TOKEN}", 4401))
    assert TOKEN not in line and line.endswith('"WebSocket /live?token=***" 4401')


def test_authorization_and_cookie_headers_are_redacted_in_any_spelling() -> None:
    cases = {
        f"Authorization: Bearer {TOKEN}": "Authorization: Bearer ***",
        f"authorization: basic {TICKET}": "authorization: basic ***",
        f"headers=[(b'authorization', b'Bearer {TOKEN}'), (b'host', b'h')]":
            "headers=[(b'authorization', b'Bearer ***'), (b'host', b'h')]",
        f"{{'Authorization': 'Bearer {TOKEN}'}}": "{'Authorization': 'Bearer ***'}",
        f"sent Bearer {TOKEN} upstream": "sent Bearer *** upstream",
        "Cookie: palaver_session=s3cr3t; csrf=abc": "Cookie: ***",
        "Set-Cookie: palaver_session=s3cr3t; HttpOnly; SameSite=Lax": "Set-Cookie: ***",
        "[(b'cookie', b'palaver_session=s3cr3t'), (b'accept', b'*/*')]": "[(b'cookie', b'***'), (b'accept', b'*/*')]",
        '{"set-cookie": "palaver_session=s3cr3t"}': '{"set-cookie": "***"}',
    }  # fmt: skip
    for text, expected in cases.items():
        assert redact(text) == expected
        assert shown(record("%s", text)).endswith(expected)


def test_ordinary_text_is_left_alone() -> None:
    for text in ("the basic idea: a bearer of news", "GET /v1/meetings/m1/dialogues?run=whisper:tiny.en",
                 "tokenizer=whisper tickets sold: 3", "/v1/users?username=token&limit=5"):  # fmt: skip
        assert redact(text) == text


def test_a_secret_split_across_format_and_argument_is_caught() -> None:
    line = shown(record("opening /v1/live?ticket=%s", TICKET, name="palaver.demo"))
    assert TICKET not in line and line.endswith("/v1/live?ticket=***")


def test_non_string_arguments_are_redacted_through_their_text() -> None:
    class Url:
        def __str__(self) -> str:
            return f"wss://h/v1/live?access_token={TOKEN}"

    line = shown(record("connecting to %s after %d tries", Url(), 3, name="websockets.client"))
    assert TOKEN not in line and line.endswith("connecting to wss://h/v1/live?access_token=*** after 3 tries")


def test_tracebacks_are_redacted() -> None:
    try:
        raise ConnectionError(f"GET https://api/v1/me?token={TOKEN} failed")
    except ConnectionError:
        import sys

        rec = record("request failed", name="palaver.demo", exc_info=sys.exc_info())
    line = shown(rec)
    assert "ConnectionError" in line and TOKEN not in line and "?token=***" in line


@pytest.fixture
def root_log() -> Iterator[io.StringIO]:
    """The root logger as the entrypoint sets it up (one stream handler, the redaction installed)."""
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved_level, saved_handlers = root.level, root.handlers[:]
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    # As in a fresh `palaver run` process: uvicorn's loggers propagate to the root. (Another test's
    # uvicorn.Config with the default log config gives them handlers of their own and stops propagation.)
    uvicorn_loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved_uvicorn = [(lg.handlers[:], lg.propagate, lg.level, lg.disabled) for lg in uvicorn_loggers]
    for lg in uvicorn_loggers:
        lg.handlers, lg.propagate, lg.disabled = [], True, False
        lg.setLevel(logging.NOTSET)
    install()
    try:
        yield out
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        for lg, (handlers, propagate, level, disabled) in zip(uvicorn_loggers, saved_uvicorn, strict=True):
            lg.handlers, lg.propagate, lg.disabled = handlers, propagate, disabled
            lg.setLevel(level)


async def test_a_real_uvicorn_server_logs_no_ticket(root_log: io.StringIO) -> None:
    """The access and WebSocket lines of uvicorn (configured as ``palaver run`` does: ``log_config=None``)
    reach the root handler, and without the secrets."""
    app = FastAPI()

    @app.get("/v1/me")
    async def me() -> dict[str, str]:
        return {"user": "u1"}

    @app.websocket("/v1/live")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/v1/me?access_token={TOKEN}",
                                    headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
            assert answer.status_code == 200
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/live?ticket={TICKET}") as ws:
            assert await ws.recv() == "hello"
    finally:
        server.should_exit = True
        await task
    text = root_log.getvalue()
    assert "uvicorn.access: 127.0.0.1:" in text and '"GET /v1/me?access_token=*** HTTP/1.1" 200' in text, text
    assert '"WebSocket /v1/live?ticket=***" [accepted]' in text, text
    assert TOKEN not in text and TICKET not in text
