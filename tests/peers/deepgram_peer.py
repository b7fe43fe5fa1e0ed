"""A local Deepgram live-transcription peer (``/v1/listen`` over WebSocket), faithful enough for the real
client (deepgram-sdk) and for our engine.

Protocol, as the service documents it:
- Upgrade on ``/v1/listen?model=..&encoding=linear16&sample_rate=..&channels=1&interim_results=true&...``
  with ``Authorization: Token <key>`` (or ``Bearer <token>``); a wrong key is refused with HTTP 401, an
  unknown model or encoding with HTTP 400.
- Binary messages are audio. Text messages: ``{"type":"KeepAlive"}``, ``{"type":"Finalize"}`` (flush what is
  pending as an ``is_final`` result with ``from_finalize``), ``{"type":"CloseStream"}`` (flush, send
  ``Metadata``, close with 1000). No audio and no KeepAlive for ``idle_timeout_s``: close 1011 (NET-0001).
- ``Results``: ``is_final=false`` interim hypotheses of the audio since the last final; ``is_final=true``
  for a finished span ``[start, start + duration)`` (seconds since the connection's first audio), with
  ``speech_final=true`` when ``endpointing`` ms of silence ended the speech. ``UtteranceEnd`` after
  ``utterance_end_ms`` without words; ``SpeechStarted`` with ``vad_events=true``.

Speech is found with a frame energy VAD and transcribed with Whisper tiny.en. Test hooks: drop the socket
(no close frame) after some bytes or seconds of a given connection; send an ``Error`` and close 1008; take
only some languages (another is refused with HTTP 400, as Deepgram refuses a model/language combination it
does not have).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import string
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from stt_workers.cloud_support import redacting_logger
from tests.peers.asr import PeerAsr, frame_voiced, new_id, pcm_to_float, voiced_ms

MODELS = {"nova-3", "nova-3-general", "nova-2", "nova-2-general", "nova-2-meeting", "base"}
FRAME_MS = 20


@dataclass
class DeepgramConnectionStats:
    query: dict[str, str]
    auth_scheme: str
    bytes_received: int = 0
    keepalives: int = 0
    finalizes: int = 0
    close_streams: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)  # everything sent to the client
    ended_by: str = ""  # "close_stream" | "drop" | "error" | "idle" | "client"


@dataclass
class DeepgramPeerHooks:
    """Faults to inject; lists are indexed by connection number (0 = the first connection)."""

    drop_after_bytes: list[int | None] = field(default_factory=list)
    drop_after_s: list[float | None] = field(default_factory=list)
    error_after_bytes: int | None = None  # first connection: an Error message, then close 1008
    idle_timeout_s: float = 10.0
    interim_every_s: float = 0.5
    max_chunk_s: float = 2.0  # longer speech is finalized (is_final, not speech_final) at the next short gap
    chunk_gap_ms: int = 160
    silence_final_s: float = 3.0  # silence is finalized as empty results this often
    languages: frozenset[str] | None = None  # the languages it takes (None: any); others get HTTP 400


class DeepgramPeer:
    def __init__(self, asr: PeerAsr, api_key: str, hooks: DeepgramPeerHooks | None = None) -> None:
        self.asr = asr
        self.api_key = api_key
        self.hooks = hooks or DeepgramPeerHooks()
        self.connections: list[DeepgramConnectionStats] = []
        self.rejected: list[int] = []
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def __aenter__(self) -> DeepgramPeer:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._process_request,
            logger=redacting_logger("tests.peers.deepgram"), max_size=None,
        )  # fmt: skip
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != "/v1/listen":
            return _json_response(connection, HTTPStatus.NOT_FOUND, "NOT_FOUND", "Not found.")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or token != self.api_key:
            self.rejected.append(401)
            return _json_response(connection, HTTPStatus.UNAUTHORIZED, "INVALID_AUTH", "Invalid credentials.")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if query.get("model", "base") not in MODELS or query.get("encoding", "linear16") != "linear16":
            self.rejected.append(400)
            return _json_response(connection, HTTPStatus.BAD_REQUEST, "Bad Request", "Unsupported model or encoding.")
        languages = self.hooks.languages
        if languages is not None and query.get("language", "en") not in languages:
            self.rejected.append(400)
            return _json_response(connection, HTTPStatus.BAD_REQUEST, "Bad Request",
                                  "No such model/language/tier combination found.")  # fmt: skip
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request else "")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        scheme = (ws.request.headers.get("Authorization", "") if ws.request else "").partition(" ")[0]
        stats = DeepgramConnectionStats(query=query, auth_scheme=scheme)
        index = len(self.connections)
        self.connections.append(stats)
        conn = _DeepgramConnection(self, ws, stats, index)
        try:
            await conn.run()
        except ConnectionClosed:
            stats.ended_by = stats.ended_by or "client"


def _json_response(connection: ServerConnection, status: HTTPStatus, code: str, message: str) -> Response:
    body = json.dumps({"err_code": code, "err_msg": message, "request_id": new_id("req")})
    response = connection.respond(status, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


class _DeepgramConnection:
    def __init__(self, peer: DeepgramPeer, ws: ServerConnection, stats: DeepgramConnectionStats, index: int):
        self.peer, self.ws, self.stats, self.index = peer, ws, stats, index
        self.hooks = peer.hooks
        q = stats.query
        self.rate = int(q.get("sample_rate", "16000"))
        self.frame = self.rate * FRAME_MS // 1000
        self.interim = q.get("interim_results") == "true"
        self.vad_events = q.get("vad_events") == "true"
        endpointing = q.get("endpointing", "10")
        self.endpointing = 0 if endpointing == "false" else self.rate * int(endpointing) // 1000
        self.utterance_end = self.rate * int(q["utterance_end_ms"]) // 1000 if "utterance_end_ms" in q else 0
        self.language = q.get("language", "en").split("-")[0]
        self.request_id = new_id("req")
        self.audio = bytearray()
        self.scanned = 0  # samples run through the VAD
        self.final_until = 0  # samples covered by is_final results
        self.in_speech = False
        self.last_voice_end = 0
        self.last_interim = 0
        self.last_word_end = 0.0
        self.words_since_utterance_end = False
        self.opened = time.monotonic()
        self.last_message = time.monotonic()

    @property
    def samples(self) -> int:
        return len(self.audio) // 2

    async def run(self) -> None:
        drop_s = _at(self.hooks.drop_after_s, self.index)
        while True:
            timeout = self.hooks.idle_timeout_s - (time.monotonic() - self.last_message)
            if drop_s is not None:
                timeout = min(timeout, drop_s - (time.monotonic() - self.opened))
            try:
                message = await asyncio.wait_for(self.ws.recv(), max(0.0, timeout))
            except TimeoutError:
                if drop_s is not None and time.monotonic() - self.opened >= drop_s:
                    return self._drop()
                self.stats.ended_by = "idle"
                await self.ws.close(1011, "NET-0001")
                return
            self.last_message = time.monotonic()
            if isinstance(message, bytes):
                if await self._audio(message):
                    return
                continue
            kind = json.loads(message).get("type")
            if kind == "KeepAlive":
                self.stats.keepalives += 1
            elif kind == "Finalize":
                self.stats.finalizes += 1
                await self._flush(from_finalize=True)
            elif kind == "CloseStream":
                self.stats.close_streams += 1
                await self._flush(from_finalize=False)
                await self._send(self._metadata())
                self.stats.ended_by = "close_stream"
                await self.ws.close(1000)
                return

    def _drop(self) -> None:
        self.stats.ended_by = "drop"
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    async def _audio(self, pcm: bytes) -> bool:
        """Takes audio; True when the connection ended here (a hook fired)."""
        self.stats.bytes_received += len(pcm)
        drop = _at(self.hooks.drop_after_bytes, self.index)
        if drop is not None and self.stats.bytes_received >= drop:
            self._drop()
            return True
        error_at = self.hooks.error_after_bytes
        if error_at is not None and self.index == 0 and self.stats.bytes_received >= error_at:
            await self._send({"type": "Error", "variant": "DataError", "code": "DATA-0000",
                              "description": "The payload cannot be decoded as audio."})  # fmt: skip
            self.stats.ended_by = "error"
            await self.ws.close(1008, "DATA-0000")
            return True
        self.audio += pcm
        await self._scan()
        return False

    async def _scan(self) -> None:
        while self.scanned + self.frame <= self.samples:
            start = self.scanned
            end = start + self.frame
            self.scanned = end
            if frame_voiced(self._float(start, end)):
                if not self.in_speech:
                    self.in_speech = True
                    if self.vad_events:
                        await self._send({"type": "SpeechStarted", "channel": [0, 1], "timestamp": start / self.rate})
                self.last_voice_end = end
                continue
            if self.in_speech:
                gap = end - self.last_voice_end
                if self.endpointing and gap >= self.endpointing:
                    self.in_speech = False
                    await self._finalize(end, speech_final=True)
                elif (self.last_voice_end - self.final_until >= self.hooks.max_chunk_s * self.rate
                      and gap >= self.rate * self.hooks.chunk_gap_ms // 1000):  # fmt: skip
                    await self._finalize(end, speech_final=False)
                continue
            if (self.utterance_end and self.words_since_utterance_end
                    and end / self.rate - self.last_word_end >= self.utterance_end / self.rate):  # fmt: skip
                self.words_since_utterance_end = False
                await self._send({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.last_word_end})
            if end - self.final_until >= self.hooks.silence_final_s * self.rate:
                await self._finalize(end, speech_final=False)
        if (self.interim and self.in_speech and self.samples - self.last_interim >= self.hooks.interim_every_s * self.rate
                and self.samples - self.final_until >= 0.3 * self.rate):  # fmt: skip
            self.last_interim = self.samples
            words = await self._transcribe(self.final_until, self.samples)
            await self._send(self._results(self.final_until, self.samples, words, is_final=False))

    async def _flush(self, from_finalize: bool) -> None:
        await self._scan()
        if self.samples > self.final_until:
            self.in_speech = False
            await self._finalize(self.samples, speech_final=False, from_finalize=from_finalize)

    async def _finalize(self, end: int, speech_final: bool, from_finalize: bool = False) -> None:
        start = self.final_until
        words = await self._transcribe(start, end)
        self.final_until = end
        self.last_interim = max(self.last_interim, end)
        if words:
            self.last_word_end = words[-1]["end"]
            self.words_since_utterance_end = True
        await self._send(self._results(start, end, words, True, speech_final, from_finalize))

    async def _transcribe(self, start: int, end: int) -> list[dict[str, Any]]:
        audio = self._float(start, end)
        if voiced_ms(audio, self.rate) < 100:
            return []
        # Whisper stretches a first word over leading silence: start it just before the speech instead.
        lead = max(0, first_voiced(audio, self.frame) - self.rate // 10)
        start, audio = start + lead, audio[lead:]
        result = await self.peer.asr.transcribe(audio, self.language)
        offset = start / self.rate
        return [
            {"word": w.word.lower().strip(string.punctuation) or w.word, "start": round(offset + w.start_s, 3),
             "end": round(offset + w.end_s, 3), "confidence": round(w.probability, 4), "punctuated_word": w.word}
            for w in result.words
        ]  # fmt: skip

    def _results(self, start: int, end: int, words: list[dict[str, Any]], is_final: bool,
                 speech_final: bool = False, from_finalize: bool = False) -> dict[str, Any]:  # fmt: skip
        confidence = float(np.mean([w["confidence"] for w in words])) if words else 0.0
        return {
            "type": "Results", "channel_index": [0, 1], "duration": round((end - start) / self.rate, 3),
            "start": round(start / self.rate, 3), "is_final": is_final, "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": " ".join(w["punctuated_word"] for w in words), "confidence": confidence,
                "words": words}]},
            "metadata": {"request_id": self.request_id, "model_uuid": "00000000-0000-4000-8000-000000000003",
                         "model_info": {"name": "general-nova-3", "version": "peer", "arch": "nova-3"}},
        }  # fmt: skip

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
            "sha256": hashlib.sha256(self.audio).hexdigest(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(),
            "duration": self.samples / self.rate, "channels": 1,
            "models": ["00000000-0000-4000-8000-000000000003"],
            "model_info": {"00000000-0000-4000-8000-000000000003": {"name": "general-nova-3", "version": "peer",
                                                                     "arch": "nova-3"}},
        }  # fmt: skip

    def _float(self, start: int, end: int) -> np.ndarray:
        return pcm_to_float(self.audio[start * 2 : end * 2])

    async def _send(self, message: dict[str, Any]) -> None:
        self.stats.messages.append(message)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(message))


def first_voiced(audio: np.ndarray, frame: int) -> int:
    for at in range(0, len(audio) - frame + 1, frame):
        if frame_voiced(audio[at : at + frame]):
            return at
    return 0


def _at(values: list[Any], index: int) -> Any:
    return values[index] if index < len(values) else None
