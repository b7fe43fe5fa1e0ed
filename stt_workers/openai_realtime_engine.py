"""OpenAI Realtime transcription (``/v1/realtime?intent=transcription`` over WebSocket) as a
``StreamingEngine``, on the ``websockets`` library (OpenAI's Python SDK is not a dependency of the project).

Contract:
- Connect with ``Authorization: Bearer <key>``; after ``transcription_session.created`` send
  ``transcription_session.update`` (``pcm16``, the transcription model and language, ``server_vad`` turn
  detection, logprobs) and wait for ``transcription_session.updated``.
- The service takes PCM16 at 24 kHz: stream audio (16 kHz) goes through a streaming linear resampler and out as
  base64 ``input_audio_buffer.append`` events.
- ``input_audio_buffer.speech_started`` opens an item at ``audio_start_ms``; ``speech_stopped`` closes it at
  ``audio_end_ms``. Both are milliseconds of session audio (24 kHz samples / 24) since the session began, so a
  stream sample is ``session_start_sample + ms * sample_rate / 1000``. ``start_sample`` is ``audio_start_ms``
  (it includes the ``prefix_padding_ms`` the service adds, as the Whisper path's padded segment start does);
  ``end_sample`` is ``audio_end_ms - silence_duration_ms``, because the service's end includes the silence that
  ended the turn.
- ``conversation.item.input_audio_transcription.delta`` accumulates into a partial; ``.completed`` is the
  final. The service gives no word times: words are spread over the speech (after the prefix padding up to the
  end), each getting time in proportion to its length in characters. Confidence is ``exp(mean logprob)`` when
  the service sends logprobs, else 0.
- Session rotation. A realtime session lives at most 30 minutes. When a session's age -- the larger of wall
  time and audio time sent, so a stream sent faster or slower than real time is safe either way -- passes
  ``session_limit_s / 2`` (at most 120 s before the limit), the engine cuts at the next pause: the service
  reports no speech in progress and the last 300 ms sent are quiet. At ``session_limit_s`` it cuts regardless.
  Cutting at stream sample B: open a new session, send it the audio from B on; the old session has had
  exactly the audio before B. The two never share audio, so nothing is transcribed twice and nothing falls
  between them (a forced cut in mid-speech splits that utterance in two). The old session then gets
  ``input_audio_buffer.commit`` (ending any speech in progress at B) and ``input_audio_buffer.clear``, whose
  ``cleared`` reply marks that the service has seen everything; items committed without a preceding
  ``speech_started`` are trailing silence and ignored. Once every item is transcribed it is closed. Finals
  of the new session are held back until the old session has drained, so results stay in time order.
- A dropped connection (abnormal close, or an ``error`` with code ``session_expired``) is replaced by a new
  session starting at the earliest audio the old one had not finished with (the start of an untranscribed
  item, else the end of the last speech it reported), which is sent again; the old session's untranscribed
  items are forgotten, so nothing is lost and no final is emitted twice.
- HTTP 400/401/403 on the upgrade, or an ``error`` event of type ``invalid_request_error`` (bad key, bad
  model...), raise ``EngineError`` without retry; the key, and any masked echo of it, never reach the message.
  The error's ``param`` says what was refused: a value of the stream's own (``...language``, the only
  per-stream field of the session) makes a ``scope="stream"`` refusal; anything else (``invalid_api_key``,
  the model, the audio format) concerns every stream (``scope="worker"``; ``refusal_scope``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from stt_workers.cloud_support import (
    END_OF_RESULTS,
    LinearResampler,
    PcmBuffer,
    Settled,
    SettledResults,
    float_to_pcm16,
    pcm16_to_float,
    redact,
    redacting_logger,
    retry_delays,
)
from stt_workers.engine import Word
from stt_workers.streaming import EngineError, RecognizedSpeech, RefusalScope

log = logging.getLogger(__name__)
_WS_LOG = redacting_logger(f"{__name__}.websocket")

SERVICE_RATE = 24000
_REFUSED = {400, 401, 403}
_QUIET_RMS = 0.01  # about -40 dBFS
_QUIET_S = 0.3
_RESEND_SAMPLES = 8000
_DRAIN_TIMEOUT_S = 30.0
_HANDSHAKE_TIMEOUT_S = 10.0
_HEALTHY_S = 10.0  # a session that lived this long before it was lost resets the count of quick losses


class _SessionExpired(Exception):
    pass


@dataclass
class _Item:
    start: int  # stream samples
    end: int | None = None
    text: str = ""
    done: bool = False
    ignored: bool = False  # silence a drain committed


class _Session:
    """One realtime session (one WebSocket) covering the stream from ``start`` to ``end`` (None: current)."""

    def __init__(self, ws: ClientConnection, start: int, sample_rate: int) -> None:
        self.ws = ws
        self.start = start
        self.end: int | None = None
        self.sent_until = start
        self.opened = time.monotonic()
        self.resampler = LinearResampler(sample_rate, SERVICE_RATE)
        self.items: dict[str, _Item] = {}
        self.speaking: str | None = None
        self.settled = start  # the service has looked at the audio before this (speech there is in items)
        self.cleared = False  # the drain's barrier came back
        self.held: list[RecognizedSpeech] = []
        self.changed = asyncio.Event()
        self.closing = False  # we close it: its end is not a drop
        self.reader_done = False
        self.replaced = False
        self.done = False

    def resume_point(self) -> int:
        """Where a replacement must start: nothing before it is still owed by this session."""
        open_items = [i.start for i in self.items.values() if not i.done and not i.ignored]
        return min(open_items) if open_items else self.settled

    def drained(self) -> bool:
        return self.cleared and all(i.done or i.ignored for i in self.items.values())


class OpenAIRealtimeEngine:
    name = "openai-realtime"

    def __init__(self, api_key: str, model: str = "gpt-4o-transcribe",
                 base_url: str = "wss://api.openai.com/v1/realtime", session_limit_s: float = 1500.0, *,
                 vad_threshold: float = 0.5, prefix_padding_ms: int = 300, silence_duration_ms: int = 500) -> None:  # fmt: skip
        self.model = model
        self._api_key = api_key
        self._url = f"{base_url}{'&' if '?' in base_url else '?'}intent=transcription"
        self.session_limit_s = session_limit_s
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.turn_detection = {"type": "server_vad", "threshold": vad_threshold,
                               "prefix_padding_ms": prefix_padding_ms, "silence_duration_ms": silence_duration_ms}  # fmt: skip

    def __repr__(self) -> str:
        return f"OpenAIRealtimeEngine(model={self.model!r}, url={self._url!r})"

    async def open(self, sample_rate: int, language: str, first_sample: int = 0) -> OpenAIRealtimeStream:
        stream = OpenAIRealtimeStream(self, sample_rate, language, first_sample)
        await stream.start()
        return stream

    async def connect(self, language: str) -> ClientConnection:
        """A configured transcription session; retries transient failures, raises EngineError on refusal."""
        headers = {"Authorization": f"Bearer {self._api_key}", "OpenAI-Beta": "realtime=v1"}
        for delay in [0.0, *retry_delays()]:
            await asyncio.sleep(delay)
            try:
                ws = await websockets.connect(self._url, additional_headers=headers, logger=_WS_LOG, max_size=None,
                                              open_timeout=_HANDSHAKE_TIMEOUT_S)  # fmt: skip
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in _REFUSED:
                    raise EngineError(f"OpenAI Realtime refused the session (HTTP {status})") from None
                log.warning("openai realtime upgrade failed (HTTP %s); retrying", status)
                continue
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                log.warning("openai realtime connect failed (%s); retrying", type(exc).__name__)
                continue
            try:
                await asyncio.wait_for(self._configure(ws, language), _HANDSHAKE_TIMEOUT_S)
                return ws
            except EngineError:
                await ws.close()
                raise
            except (ConnectionClosed, TimeoutError) as exc:
                log.warning("openai realtime session setup failed (%s); retrying", type(exc).__name__)
                await ws.close()
        raise ConnectionError("OpenAI Realtime: could not connect; giving up")

    async def _configure(self, ws: ClientConnection, language: str) -> None:
        update = {"type": "transcription_session.update", "session": {
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": self.model, "language": language},
            "turn_detection": self.turn_detection,
            "include": ["item.input_audio_transcription.logprobs"],
        }}  # fmt: skip
        async for raw in ws:
            event = json.loads(raw)
            kind = event.get("type")
            if kind == "error":
                self.check_error(event)
            elif kind == "transcription_session.created":
                await ws.send(json.dumps(update))
            elif kind == "transcription_session.updated":
                return
        raise ConnectionClosed(None, None)

    def redact(self, text: str) -> str:
        return redact(text, self._api_key)

    def check_error(self, event: dict[str, Any]) -> None:
        """Raises EngineError for a refusal, _SessionExpired for the end of a session's life; logs the rest."""
        error = event.get("error") or {}
        kind, code = error.get("type"), error.get("code")
        message = self.redact(str(error.get("message", "")))
        if code == "input_audio_buffer_commit_empty":
            return  # a drain's commit found less than 100 ms: nothing to transcribe
        if code == "session_expired":
            raise _SessionExpired()
        if kind in ("invalid_request_error", "authentication_error", "permission_error"):
            raise EngineError(f"OpenAI Realtime refused the session: {code or kind}: {message}",
                              scope=refusal_scope(error))  # fmt: skip
        log.warning("openai realtime error %s/%s: %s", kind, code, message)


_STREAM_PARAMS = ("language",)  # session fields that differ between streams (their client's choice)
_WORKER_CODES = frozenset({"invalid_api_key", "insufficient_quota", "model_not_found"})


def refusal_scope(error: dict[str, Any]) -> RefusalScope:
    """Whether a refusal (the ``error`` object of an ``error`` event) concerns only this stream: an invalid
    value of a per-stream field (``session.input_audio_transcription.language``), or every stream."""
    param = str(error.get("param") or "")
    if error.get("code") in _WORKER_CODES or error.get("type") != "invalid_request_error":
        return "worker"
    return "stream" if param.rpartition(".")[2] in _STREAM_PARAMS else "worker"


class OpenAIRealtimeStream(SettledResults):
    """One audio stream over one or more realtime sessions; see the module docstring."""

    def __init__(self, engine: OpenAIRealtimeEngine, sample_rate: int, language: str, first_sample: int) -> None:
        self._engine = engine
        self._rate = sample_rate
        self._language = language
        self._audio = PcmBuffer(first_sample)  # what a replacement session may need again
        self._sent_until = first_sample
        self._settled = first_sample  # see ``settled_sample``
        self._settled_queued = first_sample  # the last ``Settled`` mark put on the queue
        self._tail = np.zeros(0, np.float32)  # the last ``_QUIET_S`` of audio
        self._sessions: list[_Session] = []  # in stream order; the last one is current until ``finish``
        self._lock = asyncio.Lock()  # orders audio, rotations and replacements
        self._limit = engine.session_limit_s
        self._soft_limit = engine.session_limit_s - min(0.5 * engine.session_limit_s, 120.0)
        self._pad = engine.prefix_padding_ms * sample_rate // 1000
        self._silence = engine.silence_duration_ms * sample_rate // 1000
        self._finishing = False
        self._failure: BaseException | None = None
        self._ended = asyncio.Event()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self.sessions_opened = 0
        self._quick_losses = 0

    async def start(self) -> None:
        self._sessions.append(await self._open_session(self._sent_until))

    async def send(self, pcm: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        async with self._lock:
            self._audio.append(pcm)
            self._sent_until += len(pcm) // 2
            self._tail = np.concatenate([self._tail, pcm16_to_float(pcm)])[-int(_QUIET_S * self._rate) :]
            await self._push(self._sessions[-1], pcm)
            if self._should_rotate(self._sessions[-1]):
                await self._rotate()

    async def finish(self) -> None:
        async with self._lock:
            if not self._finishing and self._failure is None:
                self._finishing = True
                current = self._sessions[-1]
                current.end = self._sent_until
                self._spawn(self._drain(current))
        await self._ended.wait()
        if self._failure is not None:
            raise self._failure

    async def close(self) -> None:
        """Drop every session now, without draining; undelivered results are lost (see ``settled_sample``)."""
        self._finishing = True
        for session in self._sessions:
            session.closing = True
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in self._sessions:
            with contextlib.suppress(Exception):
                await session.ws.close()
        self._ended.set()

    # -- sessions -------------------------------------------------------------------------------------------

    async def _open_session(self, start: int) -> _Session:
        session = _Session(await self._engine.connect(self._language), start, self._rate)
        self.sessions_opened += 1
        self._spawn(self._read(session))
        return session

    async def _push(self, session: _Session, pcm: bytes) -> None:
        audio = session.resampler.process(pcm16_to_float(pcm))
        session.sent_until += len(pcm) // 2
        event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(float_to_pcm16(audio)).decode()}
        with contextlib.suppress(ConnectionClosed):  # its reader replaces it and resends
            await session.ws.send(json.dumps(event))

    def _should_rotate(self, session: _Session) -> bool:
        if self._finishing:
            return False
        age = max(time.monotonic() - session.opened, (self._sent_until - session.start) / self._rate)
        if age >= self._limit:
            return True
        quiet = len(self._tail) and float(np.sqrt(np.mean(np.square(self._tail)))) < _QUIET_RMS
        return age >= self._soft_limit and session.speaking is None and bool(quiet)

    async def _rotate(self) -> None:
        """Under the lock: the current session gets nothing after ``_sent_until``; a new one starts there."""
        old = self._sessions[-1]
        try:
            new = await self._open_session(self._sent_until)
        except Exception as exc:
            self._fail(exc)
            raise
        old.end = self._sent_until
        self._sessions.append(new)
        log.info("openai realtime: rotating session at sample %d", old.end)
        self._spawn(self._drain(old))

    async def _drain(self, session: _Session) -> None:
        try:
            await session.ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await session.ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            await self._wait(session, lambda: session.drained() or session.reader_done, _DRAIN_TIMEOUT_S)
        except ConnectionClosed:
            return  # its reader replaces it; the replacement drains
        except TimeoutError:
            log.warning("openai realtime: session did not drain in %.0f s; closing it", _DRAIN_TIMEOUT_S)
        if session.replaced or (session.reader_done and not session.drained()):
            return  # the connection dropped: its reader replaces it, and the replacement drains
        session.closing = True
        await session.ws.close()
        self._retire(session)

    async def _wait(self, session: _Session, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            session.changed.clear()
            await asyncio.wait_for(session.changed.wait(), max(0.0, deadline - time.monotonic()))

    async def _read(self, session: _Session) -> None:
        expired = False
        try:
            async for raw in session.ws:
                self._on_event(session, json.loads(raw))
                session.changed.set()
            if session.closing:
                return
            log.warning("openai realtime closed a session unasked; replacing it")
        except _SessionExpired:
            log.warning("openai realtime session expired; replacing it")
            expired = True
        except ConnectionClosed:
            if session.closing:
                return
            log.warning("openai realtime connection dropped; replacing it")
        except EngineError as exc:
            self._fail(exc)
            return
        finally:
            session.reader_done = True
            session.changed.set()
        await self._replace(session, expired)

    async def _replace(self, old: _Session, expired: bool = False) -> None:
        async with self._lock:
            if self._failure is not None or old.done or old not in self._sessions:
                return
            resume = max(old.resume_point(), self._audio.start)
            # A session that dies young is the same incident again: back off, and give up in the end. A
            # session that reached the service's time limit is no incident (it missed its rotation).
            young = time.monotonic() - old.opened < _HEALTHY_S
            self._quick_losses = self._quick_losses + 1 if young and not expired else 0
            delays = retry_delays()
            if self._quick_losses > len(delays):
                self._fail(ConnectionError("OpenAI Realtime: sessions keep failing; giving up"))
                return
            try:
                if self._quick_losses > 1:
                    await asyncio.sleep(delays[self._quick_losses - 2])
                new = await self._open_session(resume)
            except Exception as exc:
                self._fail(exc)
                return
            old.replaced = True
            new.end = old.end
            new.held = [r for r in old.held if r.final]
            self._sessions[self._sessions.index(old)] = new
            audio = self._audio.slice(resume, old.end)
            for i in range(0, len(audio), _RESEND_SAMPLES * 2):
                await self._push(new, audio[i : i + _RESEND_SAMPLES * 2])
            if new.end is not None:
                self._spawn(self._drain(new))
        with contextlib.suppress(Exception):
            await old.ws.close()

    def _retire(self, session: _Session) -> None:
        session.done = True
        self._flush()

    def _flush(self) -> None:
        """Release held finals of the oldest sessions; end the results once every session is done."""
        while self._sessions:
            head = self._sessions[0]
            for speech in head.held:
                self._queue.put_nowait(speech)
            head.held.clear()
            if not head.done:
                break
            self._sessions.pop(0)
        if self._finishing and not self._sessions and not self._ended.is_set():
            self._queue.put_nowait(END_OF_RESULTS)
            self._ended.set()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            self._queue.put_nowait(exc)
            self._ended.set()
            for session in self._sessions:
                session.closing = True
                self._spawn(session.ws.close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- events ---------------------------------------------------------------------------------------------

    def _on_event(self, session: _Session, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        item_id = event.get("item_id", "")
        item = session.items.get(item_id)
        if kind == "error":
            self._engine.check_error(event)
        elif kind == "input_audio_buffer.speech_started":
            session.items[item_id] = _Item(start=self._sample(session, event["audio_start_ms"]))
            session.speaking = item_id
        elif kind == "input_audio_buffer.speech_stopped" and item is not None:
            end_ms = event["audio_end_ms"]
            item.end = max(item.start, self._sample(session, end_ms) - self._silence)
            session.settled = max(session.settled, self._sample(session, end_ms))
            session.speaking = None
        elif kind == "input_audio_buffer.committed":
            if item is None:  # a drain's commit of trailing silence
                session.items[item_id] = _Item(start=session.end or session.sent_until, ignored=True)
            elif item.end is None:  # a drain's commit cut the speech in progress
                item.end = session.end if session.end is not None else session.sent_until
                session.speaking = None
        elif kind == "input_audio_buffer.cleared" and session.end is not None:
            session.cleared = True
            session.settled = max(session.settled, session.end)
        elif kind == "conversation.item.input_audio_transcription.delta" and item and not item.ignored:
            item.text += event.get("delta", "")
            self._emit(session, self._speech(session, item, final=False, logprobs=None))
        elif kind == "conversation.item.input_audio_transcription.completed" and item and not item.ignored:
            item.text, item.done = event.get("transcript", ""), True
            self._emit(session, self._speech(session, item, final=True, logprobs=event.get("logprobs")))
        elif kind == "conversation.item.input_audio_transcription.failed" and item:
            item.done = True
            log.warning("openai realtime: transcription of an utterance failed: %s",
                        self._engine.redact(str((event.get("error") or {}).get("code"))))  # fmt: skip
        settled = min(s.resume_point() for s in self._sessions) if self._sessions else self._sent_until
        self._audio.trim(settled)
        if settled > self._settled_queued:  # after this event's results: nothing owed before it any more
            self._settled_queued = settled
            self._queue.put_nowait(Settled(settled))

    def _sample(self, session: _Session, ms: float) -> int:
        return session.start + round(ms * self._rate / 1000)

    def _emit(self, session: _Session, speech: RecognizedSpeech | None) -> None:
        if speech is None:
            return
        if self._sessions and session is self._sessions[0]:
            self._queue.put_nowait(speech)
        elif speech.final:
            session.held.append(speech)

    def _speech(self, session: _Session, item: _Item, final: bool, logprobs: Any) -> RecognizedSpeech | None:
        words = item.text.split()
        if not words:
            return None
        end = item.end if item.end is not None else session.sent_until
        speech_from = item.start + self._pad if end - item.start > 2 * self._pad else item.start
        confidence = 0.0
        if logprobs:
            confidence = math.exp(sum(float(p["logprob"]) for p in logprobs) / len(logprobs))
        return RecognizedSpeech(
            final=final, start_sample=item.start, end_sample=end, text=" ".join(words),
            words=spread_words(words, (speech_from - item.start) / self._rate, (end - item.start) / self._rate),
            confidence=confidence,
        )  # fmt: skip


def spread_words(words: list[str], start_s: float, end_s: float) -> tuple[Word, ...]:
    """Word times for a service that gives none: ``[start_s, end_s]`` shared in proportion to word length."""
    weights = [max(1, sum(c.isalnum() for c in w)) for w in words]
    scale = max(0.0, end_s - start_s) / sum(weights)
    out, at = [], start_s
    for word, weight in zip(words, weights, strict=True):
        out.append(Word(word, round(at, 3), round(at + weight * scale, 3), 0.0))
        at += weight * scale
    return tuple(out)
