"""The API client side of joining a meeting, as the demo, benchmarks and tests use it: register, sign in
(OAuth2 password flow), create a meeting, invite, and take a fresh single-use ticket for each socket."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx


class ApiError(Exception):
    """The API refused a call: ``status`` and its detail."""

    def __init__(self, what: str, response: httpx.Response):
        super().__init__(f"{what}: {response.status_code} {response.text[:300]}")
        self.status = response.status_code


RETRY_503_FOR_S = 60.0  # how long a call keeps trying while the API answers 503 (store or registry away)


async def _call(send: Callable[[], Awaitable[httpx.Response]], what: str) -> dict:
    """``send()`` until it is not a 503 (then as ``_ok``), waiting its ``Retry-After`` (at most 5 s) in
    between, for at most ``RETRY_503_FOR_S``: a 503 says to try again, and a client should."""
    deadline = time.monotonic() + RETRY_503_FOR_S
    while True:
        response = await send()
        if response.status_code != 503 or time.monotonic() > deadline:
            return _ok(response, what)
        await asyncio.sleep(min(5.0, float(response.headers.get("Retry-After", "1") or 1)))


def _ok(response: httpx.Response, what: str) -> dict:
    """The answer's JSON; a 5xx raises httpx.HTTPStatusError (worth retrying), a 4xx ApiError (not)."""
    if response.status_code >= 500:
        response.raise_for_status()
    if response.status_code >= 400:
        raise ApiError(what, response)
    return response.json() if response.content else {}


@dataclass
class Participant:
    """A signed-in user: its bearer token rides on every call of ``http``."""

    base_url: str
    user_id: str
    username: str
    access_token: str = field(repr=False)
    verify: bool | str | ssl.SSLContext = True  # TLS verification of a https base URL (a CA file for a self-signed one)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30, verify=self.verify,
                                 headers={"Authorization": f"Bearer {self.access_token}"})  # fmt: skip

    async def ticket(self, meeting_id: str, use: Literal["ingest", "live"] = "ingest") -> str:
        """A fresh single-use ticket for the meeting's audio (``ingest``) or live socket."""
        async with self.client() as http:
            return str(_ok(await http.post(f"/v1/meetings/{meeting_id}/{use}-tickets"), f"{use} ticket")["ticket"])


async def sign_up(base_url: str, username: str, password: str | None = None, email: str | None = None,
                  verify: bool | str | ssl.SSLContext = True, idempotency_key: str | None = None) -> Participant:  # fmt: skip
    """Register ``username`` (with a made-up email and password unless given) and sign in. With an
    ``idempotency_key``, registering again answers with the same user (its id derives from the key)."""
    password = password or secrets.token_urlsafe(16)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, verify=verify) as http:
        body = {"username": username, "email": email or f"{username}@example.com", "password": password}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        await _call(lambda: http.post("/v1/users", json=body, headers=headers), f"register {username}")
    return await sign_in(base_url, username, password, verify)


async def sign_in(base_url: str, username: str, password: str, verify: bool | str | ssl.SSLContext = True) -> Participant:
    async with httpx.AsyncClient(base_url=base_url, timeout=30, verify=verify) as http:
        form = {"grant_type": "password", "username": username, "password": password}
        token = (await _call(lambda: http.post("/v1/auth/token", data=form), f"sign in {username}"))["access_token"]
        me = await _call(lambda: http.get("/v1/me", headers={"Authorization": f"Bearer {token}"}), "me")
    return Participant(base_url, me["user_id"], me["username"], token, verify)


@dataclass
class Meeting:
    meeting_id: str
    people: dict[str, Participant]  # by the name the caller gave each

    def names(self) -> dict[str, str]:
        """user id -> the caller's name for that person (dialogues carry user ids as speaker ids)."""
        return {p.user_id: name for name, p in self.people.items()}


async def create_meeting(owner: Participant, title: str, agenda: list[str] | None = None,
                         idempotency_key: str | None = None) -> str:  # fmt: skip
    """The new meeting's id; with an ``idempotency_key``, creating again answers with the same meeting."""
    async with owner.client() as http:
        body = {"title": title, "agenda": agenda or []}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        created = await _call(lambda: http.post("/v1/meetings", json=body, headers=headers), "create meeting")
        return str(created["meeting_id"])


async def invite(owner: Participant, meeting_id: str, guest: Participant,
                 role: Literal["participant", "viewer"] = "participant") -> None:  # fmt: skip
    async with owner.client() as http:
        body = {"user_id": guest.user_id, "role": role}
        await _call(lambda: http.post(f"/v1/meetings/{meeting_id}/participants", json=body), f"invite {guest.username}")


async def open_meeting(base_url: str, names: list[str], title: str, verify: bool | str | ssl.SSLContext = True) -> Meeting:
    """Register one account per name (usernames get a random suffix, so runs never collide), the first
    creates the meeting and invites the others as participants."""
    tag = secrets.token_hex(3)
    people = {name: await sign_up(base_url, f"{name}-{tag}", verify=verify) for name in names}
    owner = people[names[0]]
    meeting_id = await create_meeting(owner, title)
    for name in names[1:]:
        await invite(owner, meeting_id, people[name])
    return Meeting(meeting_id, people)
