"""A local OpenAI Realtime transcription peer (``/v1/realtime?intent=transcription``), faithful enough for
our engine.

Protocol, as the service documents it:
- Upgrade on ``/v1/realtime?intent=transcription`` with ``Authorization: Bearer <key>``. A wrong key is
  accepted at the HTTP level, then answered with an ``error`` event (``invalid_request_error`` /
  ``invalid_api_key``, echoing a masked key) and close code 3000, as the real service does.
- ``transcription_session.created`` first; ``transcription_session.update`` is validated (audio format,
  transcription model) and answered with ``transcription_session.updated`` or an ``error``.
- ``input_audio_buffer.append`` carries base64 PCM16 at 24 kHz. Server VAD (frame energy here): on speech,
  ``input_audio_buffer.speech_started`` with ``audio_start_ms`` (ms of session audio, minus
  ``prefix_padding_ms``); after ``silence_duration_ms`` of silence ``speech_stopped`` with ``audio_end_ms``
  (including that silence), then ``input_audio_buffer.committed`` and ``conversation.item.created``; the
  transcription then arrives asynchronously as ``conversation.item.input_audio_transcription.delta`` events
  and one ``.completed`` (with logprobs), while audio keeps flowing.
- ``input_audio_buffer.commit`` commits the buffer (error ``input_audio_buffer_commit_empty`` under 100 ms);
  ``input_audio_buffer.clear`` answers ``input_audio_buffer.cleared``.

Test hooks: drop the socket (no close frame) after some bytes or seconds of a given connection; send an
``error`` after some bytes; end sessions after ``session_max_s`` with the ``session_expired`` error; take
only some transcription languages (an update asking for another gets ``invalid_value`` with
``param: session.input_audio_transcription.language``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from palaver.demo.synth import resample
from stt_workers.cloud_support import redacting_logger
from tests.peers.asr import PeerAsr, frame_voiced, new_id, pcm_to_float, voiced_ms

RATE = 24000
FRAME = RATE * 20 // 1000
MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")


@dataclass
class RealtimeSessionStats:
    authorized: bool
    update: dict[str, Any] | None = None
    bytes_received: int = 0
    commits: int = 0
    clears: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # everything sent to the client
    transcripts: list[str] = field(default_factory=list)
    ended_by: str = ""  # "drop" | "expired" | "error" | "auth" | "client"


@dataclass
class OpenAIPeerHooks:
    drop_after_bytes: list[int | None] = field(default_factory=list)  # per connection number
    drop_after_s: list[float | None] = field(default_factory=list)
    error_after_bytes: int | None = None  # first connection: an ``error`` event, then close 1011
    error: dict[str, Any] = field(default_factory=lambda: {
        "type": "invalid_request_error", "code": "invalid_value", "param": "audio",
        "message": "Invalid 'audio'. Expected base64-encoded mono PCM16 audio."})  # fmt: skip
    session_max_s: float | None = None
    languages: frozenset[str] | None = None  # transcription languages it takes (None: any)


class OpenAIRealtimePeer:
    def __init__(self, asr: PeerAsr, api_key: str, hooks: OpenAIPeerHooks | None = None) -> None:
        self.asr = asr
        self.api_key = api_key
        self.hooks = hooks or OpenAIPeerHooks()
        self.sessions: list[RealtimeSessionStats] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/v1/realtime"

    async def __aenter__(self) -> OpenAIRealtimePeer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request,
            logger=redacting_logger("tests.peers.openai"), max_size=None,
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != "/v1/realtime":
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found\n")
        if parse_qs(url.query).get("intent") != ["transcription"]:
            return connection.respond(HTTPStatus.BAD_REQUEST, "Missing intent=transcription\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        auth = ws.request.headers.get("Authorization", "") if ws.request else ""
        stats = RealtimeSessionStats(authorized=auth == f"Bearer {self.api_key}")
        index = len(self.sessions)
        self.sessions.append(stats)
        session = _RealtimeSession(self, ws, stats, index)
        try:
            if not stats.authorized:
                await session.refuse(auth.partition(" ")[2])
                return
            await session.run()
        except ConnectionClosed:
            stats.ended_by = stats.ended_by or "client"
        finally:
            session.stop()


class _RealtimeSession:
    def __init__(self, peer: OpenAIRealtimePeer, ws: ServerConnection, stats: RealtimeSessionStats, index: int):
        self.peer, self.ws, self.stats, self.index = peer, ws, stats, index
        self.hooks = peer.hooks
        self.config: dict[str, Any] = {
            "input_audio_format": "pcm16",
            "input_audio_transcription": None,
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                               "silence_duration_ms": 200},
            "input_audio_noise_reduction": None, "include": None,
        }  # fmt: skip
        self.session_id = new_id("sess")
        self.audio = bytearray()  # every 24 kHz sample of the session
        self.scanned = 0
        self.buffer_start = 0  # the uncommitted input buffer starts here
        self.speaking: str | None = None
        self.speech_start = 0
        self.last_voice_end = 0
        self.previous_item: str | None = None
        self.jobs: asyncio.Queue[tuple[str, int, int]] = asyncio.Queue()
        self.worker = asyncio.create_task(self._transcribe_jobs())
        self.opened = time.monotonic()

    @property
    def samples(self) -> int:
        return len(self.audio) // 2

    def stop(self) -> None:
        self.worker.cancel()

    async def refuse(self, key: str) -> None:
        masked = f"{key[:3]}{'*' * max(4, len(key) - 7)}{key[-4:]}" if key else "(none)"
        await self._send({"type": "error", "error": {
            "type": "invalid_request_error", "code": "invalid_api_key", "param": None, "event_id": None,
            "message": f"Incorrect API key provided: {masked}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys."}})  # fmt: skip
        self.stats.ended_by = "auth"
        await self.ws.close(3000, "invalid_request_error.invalid_api_key")

    async def run(self) -> None:
        await self._send({"type": "transcription_session.created", "session": self._session_object()})
        drop_s = _at(self.hooks.drop_after_s, self.index)
        while True:
            deadlines = [d for d in (drop_s, self.hooks.session_max_s) if d is not None]
            timeout = min(deadlines) - (time.monotonic() - self.opened) if deadlines else None
            try:
                raw = await asyncio.wait_for(self.ws.recv(), None if timeout is None else max(0.0, timeout))
            except TimeoutError:
                if drop_s is not None and time.monotonic() - self.opened >= drop_s:
                    return self._drop()
                await self._send({"type": "error", "error": {
                    "type": "invalid_request_error", "code": "session_expired", "param": None, "event_id": None,
                    "message": "Your session hit the maximum duration of 30 minutes."}})  # fmt: skip
                self.stats.ended_by = "expired"
                await self.ws.close(1000)
                return
            event = json.loads(raw)
            kind = event.get("type")
            if kind == "transcription_session.update":
                await self._update(event)
            elif kind == "input_audio_buffer.append":
                if await self._append(base64.b64decode(event["audio"])):
                    return
            elif kind == "input_audio_buffer.commit":
                self.stats.commits += 1
                await self._commit(event)
            elif kind == "input_audio_buffer.clear":
                self.stats.clears += 1
                self.buffer_start, self.speaking = self.samples, None
                await self._send({"type": "input_audio_buffer.cleared"})
            else:
                await self._error("invalid_value", f"Invalid value: '{kind}'.", "type", event)

    def _drop(self) -> None:
        self.stats.ended_by = "drop"
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    async def _update(self, event: dict[str, Any]) -> None:
        session = event.get("session", {})
        self.stats.update = session
        fmt = session.get("input_audio_format", "pcm16")
        model = (session.get("input_audio_transcription") or {}).get("model", "gpt-4o-transcribe")
        if fmt not in ("pcm16", "g711_ulaw", "g711_alaw"):
            return await self._error("invalid_value", f"Invalid value: '{fmt}'.", "session.input_audio_format", event)
        if model not in MODELS:
            supported = ", ".join(f"'{m}'" for m in MODELS)
            return await self._error("invalid_value", f"Invalid value: '{model}'. Supported values are: {supported}.",
                                     "session.input_audio_transcription.model", event)  # fmt: skip
        language = (session.get("input_audio_transcription") or {}).get("language")
        languages = self.hooks.languages
        if language is not None and languages is not None and language not in languages:
            supported = ", ".join(f"'{code}'" for code in sorted(languages))
            return await self._error("invalid_value", f"Invalid value: '{language}'. Supported values are: {supported}.",
                                     "session.input_audio_transcription.language", event)  # fmt: skip
        self.config.update({k: v for k, v in session.items() if k in self.config})
        await self._send({"type": "transcription_session.updated", "session": self._session_object()})

    async def _append(self, pcm: bytes) -> bool:
        self.stats.bytes_received += len(pcm)
        drop = _at(self.hooks.drop_after_bytes, self.index)
        if drop is not None and self.stats.bytes_received >= drop:
            self._drop()
            return True
        if self.hooks.error_after_bytes is not None and self.index == 0 and self.stats.bytes_received >= self.hooks.error_after_bytes:
            await self._send({"type": "error", "error": {**self.hooks.error, "event_id": None}})
            self.stats.ended_by = "error"
            await self.ws.close(1011, "error")
            return True
        self.audio += pcm
        vad = self.config["turn_detection"] or {}
        prefix = RATE * int(vad.get("prefix_padding_ms", 300)) // 1000
        silence = RATE * int(vad.get("silence_duration_ms", 200)) // 1000
        while vad and self.scanned + FRAME <= self.samples:
            start, end = self.scanned, self.scanned + FRAME
            self.scanned = end
            if frame_voiced(self._float(start, end)):
                if self.speaking is None:
                    self.speaking = new_id("item")
                    self.speech_start = max(self.buffer_start, start - prefix)
                    await self._send({"type": "input_audio_buffer.speech_started", "item_id": self.speaking,
                                      "audio_start_ms": self.speech_start * 1000 // RATE})  # fmt: skip
                self.last_voice_end = end
            elif self.speaking is not None and end - self.last_voice_end >= silence:
                await self._send({"type": "input_audio_buffer.speech_stopped", "item_id": self.speaking,
                                  "audio_end_ms": end * 1000 // RATE})  # fmt: skip
                await self._commit_item(self.speaking, self.speech_start, end)
        return False

    async def _commit(self, event: dict[str, Any]) -> None:
        have_ms = (self.samples - self.buffer_start) * 1000 / RATE
        if have_ms < 100:
            return await self._error(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {have_ms:.2f}ms of audio.", None, event)  # fmt: skip
        if self.speaking is not None:
            await self._commit_item(self.speaking, self.speech_start, self.samples)
        else:
            await self._commit_item(new_id("item"), self.buffer_start, self.samples)

    async def _commit_item(self, item_id: str, start: int, end: int) -> None:
        await self._send({"type": "input_audio_buffer.committed", "previous_item_id": self.previous_item,
                          "item_id": item_id})  # fmt: skip
        await self._send({"type": "conversation.item.created", "previous_item_id": self.previous_item, "item": {
            "id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
            "content": [{"type": "input_audio", "transcript": None}]}})  # fmt: skip
        self.previous_item, self.buffer_start, self.speaking = item_id, end, None
        self.scanned = max(self.scanned, end)
        await self.jobs.put((item_id, start, end))

    async def _transcribe_jobs(self) -> None:
        while True:
            item_id, start, end = await self.jobs.get()
            audio = resample(self._float(start, end), RATE, 16000)
            words: list[tuple[str, float]] = []
            if voiced_ms(audio, 16000) >= 100:
                language = ((self.config["input_audio_transcription"] or {}).get("language")) or "en"
                result = await self.peer.asr.transcribe(audio, language)
                words = [(w.word, w.probability) for w in result.words]
            for i, (word, _) in enumerate(words):
                await self._send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                                  "content_index": 0, "delta": word if i == 0 else f" {word}"})  # fmt: skip
            transcript = " ".join(w for w, _ in words)
            self.stats.transcripts.append(transcript)
            await self._send({
                "type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                "content_index": 0, "transcript": transcript,
                "logprobs": [{"token": w, "logprob": math.log(max(p, 1e-6)), "bytes": list(w.encode())}
                             for w, p in words],
                "usage": {"type": "duration", "seconds": round((end - start) / RATE, 3)},
            })  # fmt: skip

    async def _error(self, code: str, message: str, param: str | None, event: dict[str, Any]) -> None:
        await self._send({"type": "error", "error": {"type": "invalid_request_error", "code": code,
                                                     "message": message, "param": param,
                                                     "event_id": event.get("event_id")}})  # fmt: skip

    def _session_object(self) -> dict[str, Any]:
        return {"id": self.session_id, "object": "realtime.transcription_session",
                "expires_at": int(time.time()) + 1800, "client_secret": None, **self.config}  # fmt: skip

    def _float(self, start: int, end: int) -> np.ndarray:
        return pcm_to_float(self.audio[start * 2 : end * 2])

    async def _send(self, event: dict[str, Any]) -> None:
        event = {"event_id": new_id("event"), **event}
        self.stats.events.append(event)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(event))


def _at(values: list[Any], index: int) -> Any:
    return values[index] if index < len(values) else None
