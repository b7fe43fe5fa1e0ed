"""The request body limit (stack/body_limit.py) in front of a FastAPI route that reads a JSON body."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request

from stack.body_limit import BodySizeLimit

LIMIT = 1024


def _client() -> tuple[TestClient, list[int]]:
    app = FastAPI()
    app.add_middleware(BodySizeLimit, max_bytes=LIMIT)
    handled: list[int] = []

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, int]:
        handled.append(len(body["text"]))
        return {"length": len(body["text"])}

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    return TestClient(app), handled


def _json(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    return b'{"text":"' + b"x" * (size - 11) + b'"}'


def _chunks(body: bytes) -> Iterator[bytes]:
    for at in range(0, len(body), 100):
        yield body[at : at + 100]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_a_body_at_the_limit_is_read(streamed: bool) -> None:
    client, handled = _client()
    body = _json(LIMIT)
    answer = client.post("/echo", content=_chunks(body) if streamed else body,
                         headers={"content-type": "application/json"})  # fmt: skip
    assert (answer.status_code, answer.json(), handled) == (200, {"length": LIMIT - 11}, [LIMIT - 11])


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/echo", "/raw"])
def test_a_body_over_the_limit_gets_413_and_reaches_no_route(streamed: bool, path: str) -> None:
    client, handled = _client()
    body = _json(LIMIT + 1)
    answer = client.post(path, content=_chunks(body) if streamed else body,
                         headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code == 413
    assert answer.json() == {"detail": f"the request body is larger than {LIMIT} bytes"}
    assert handled == []


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    client, _ = _client()
    answer = client.post("/raw", content=b"{}", headers={"content-length": str(LIMIT + 1)})
    assert answer.status_code == 413


def test_other_requests_pass() -> None:
    client, _ = _client()
    assert client.post("/raw", content=b"").json() == {"length": 0}
    assert client.get("/openapi.json").status_code == 200
