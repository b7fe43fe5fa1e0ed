"""Runs the demo meeting against a running Palaver: synthesize, stream three speakers concurrently,
show dialogues as they finalize, print the merged transcript."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import ssl
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import httpx
import websockets

from palaver.ack_log import AckLog
from palaver.demo.accounts import Meeting, Participant, create_meeting, invite, open_meeting, sign_up
from palaver.demo.client import RECONNECT, ReconnectPolicy, asked_wait_s, stream_pcm, ws_url
from palaver.demo.script import DEMO_MEETING
from palaver.demo.synth import SAMPLE_RATE, Voice, meeting_tracks
from palaver.textmetrics import word_error_rate
from palaver.tls_client import websocket_options


def clock(ms: int) -> str:
    return f"{ms // 60000:02d}:{ms % 60000 / 1000:04.1f}"


async def watch_live(base_url: str, meeting: Meeting, say: Callable[[str], None], stop: asyncio.Event,
                     reconnect: ReconnectPolicy = RECONNECT, tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
    """Print each dialogue once it is final, until ``stop``. A dropped socket (the web process restarted) is
    connected again with ``reconnect``'s backoff (or the wait a full server's 1013 asks for), for as long as
    the meeting runs: the socket starts
    with the stored dialogues, and what was shown already is not shown again. ``tls``: the context that
    verifies a ``wss://`` server (default: the system's CAs)."""
    shown: set[str] = set()
    names = meeting.names()
    watcher = next(iter(meeting.people.values()))
    attempt = 0
    while not stop.is_set():
        try:
            ticket = await watcher.ticket(meeting.meeting_id, "live")
            url = f"{ws_url(base_url)}/v1/meetings/{meeting.meeting_id}/live?ticket={ticket}"
            async with websockets.connect(url, **websocket_options(url, tls)) as ws:
                attempt = 0
                while not stop.is_set():
                    try:
                        message = await asyncio.wait_for(ws.recv(), timeout=0.5)
                    except TimeoutError:
                        continue
                    d = json.loads(message)
                    # Once final its words never change (a later revision only places it): shown once.
                    if d.get("status") == "final" and d["dialogue_id"] not in shown:
                        shown.add(d["dialogue_id"])
                        say(f"  [{clock(d['start_ms'])}] {names.get(d['speaker_id'], '?'):>6}: {d['text']}")
        except (websockets.ConnectionClosed, OSError, TimeoutError, websockets.InvalidHandshake, httpx.HTTPError) as exc:
            attempt += 1
            close = exc.rcvd if isinstance(exc, websockets.ConnectionClosed) else None
            asked = asked_wait_s(close.code, close.reason) if close is not None else None  # a full server's 1013
            await asyncio.sleep(reconnect.delay_s(attempt, asked, random.random()))


async def wait_until_settled(reader: Participant, meeting_id: str, speakers: int,
                             timeout_s: float = 180.0) -> list[dict]:  # fmt: skip
    """Dialogues once every speaker's newest dialogue is final and nothing changed for 3 s."""
    deadline = time.monotonic() + timeout_s
    last: list[dict] | None = None
    stable_since = time.monotonic()
    async with reader.client() as http:
        while time.monotonic() < deadline:
            body = (await http.get(f"/v1/meetings/{meeting_id}/dialogues")).json()
            current = body["dialogues"]
            if current != last:
                last, stable_since = current, time.monotonic()
            newest: dict[str, dict] = {}
            for d in current:
                newest[d["speaker_id"]] = d
            settled = len(newest) == speakers and all(d["status"] == "final" for d in newest.values())
            if settled and time.monotonic() - stable_since >= 3:
                return current
            await asyncio.sleep(0.5)
    raise TimeoutError(f"the meeting's dialogues did not settle within {timeout_s:.0f}s")


async def open_web_app(base_url: str, meeting: Meeting, say: Callable[[str], None],
                       tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
    """A demo user with a fresh password, invited to the demo meeting and owner of a new one: prints where
    to sign in, the demo meeting's review page and the new meeting's room."""
    password = secrets.token_urlsafe(12)
    visitor = await sign_up(base_url, f"demo-{secrets.token_hex(3)}", password, verify=tls or True)
    await invite(next(iter(meeting.people.values())), meeting.meeting_id, visitor)
    room = await create_meeting(visitor, "My first Palaver meeting")
    say("\nThe web app:")
    say(f"  sign in:            {base_url}/signin   as {visitor.username} / {password}")
    say(f"  the demo's review:  {base_url}/meetings/{meeting.meeting_id}/review")
    say(f"  a new meeting room: {base_url}/meetings/{room}   (invite others from {base_url}/)")


async def run_demo(base_url: str, speed: float, say: Callable[[str], None] = print,
                   tls: ssl.SSLContext | None = None, web_app: bool = False,
                   client_log: Path | None = None) -> int:  # fmt: skip
    """``tls``: the context that verifies an ``https://`` server (default: the system's CAs). ``web_app``:
    end by opening the web app for a demo user (``open_web_app``). ``client_log``: the streams' ack log
    (``palaver.ack_log``), appended to."""
    say("synthesizing the demo meeting (hibari-tts) ...")
    tracks, placed = meeting_tracks(DEMO_MEETING, Voice())
    seconds = len(next(iter(tracks.values()))) / SAMPLE_RATE
    meeting = await open_meeting(base_url, list(tracks), "Palaver demo meeting", verify=tls or True)
    meeting_id, names = meeting.meeting_id, meeting.names()
    say(f"registered {', '.join(p.username for p in meeting.people.values())}; "
        f"{meeting.people[next(iter(tracks))].username} created meeting {meeting_id}")  # fmt: skip
    say(f"meeting {meeting_id}: {len(tracks)} speakers, {seconds:.1f} s of audio, streaming at {speed:g}x")
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_live(base_url, meeting, say, stop, tls=tls))
    await asyncio.sleep(0.3)
    with AckLog(client_log) if client_log else nullcontext() as ack_log:
        results = await asyncio.gather(
            *(stream_pcm(base_url, meeting_id, meeting.people[speaker], pcm, speed=speed, tls=tls, ack_log=ack_log)
              for speaker, pcm in tracks.items())
        )  # fmt: skip
    if client_log:
        say(f"acks logged to {client_log}; once the meeting settles: palaver check --meeting {meeting_id} "
            f"--client-log {client_log}")  # fmt: skip
    for (speaker, pcm), result in zip(tracks.items(), results, strict=True):
        for r in result.reconnects:
            say(f"stream {speaker} reconnected ({r.after}; {r.attempts} attempts) at sample {r.first_sample}")
        if result.close_code != 1000 or result.acked_samples != len(pcm):
            say(f"stream {speaker} ended badly: {result}")
            return 1
    say("all audio is durable in Kafka; waiting for the last dialogues ...")
    dialogues = await wait_until_settled(meeting.people[next(iter(tracks))], meeting_id, len(tracks))
    stop.set()
    await watcher
    say("\nMerged transcript:")
    for d in dialogues:
        say(f"  [{clock(d['start_ms'])} - {clock(d['end_ms'])}] {names.get(d['speaker_id'], '?'):>6}: {d['text']}")
    wer = word_error_rate(" ".join(p.text for p in placed), " ".join(d["text"] for d in dialogues))
    say(f"\n{len(dialogues)} dialogues; word error rate against the script: {wer:.1%}")
    say(f"REST: {base_url}/v1/meetings/{meeting_id}/dialogues")
    if web_app:
        await open_web_app(base_url, meeting, say, tls)
    return 0
