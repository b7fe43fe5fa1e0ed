"""Deepgram live transcription (``/v1/listen`` over WebSocket) as a ``StreamingEngine``.

Built on deepgram-sdk (v7): ``AsyncDeepgramClient(environment=...)`` points it at any base URL, and
``client.listen.v1.connect(...)`` is an async context manager around one WebSocket, so a reconnect is simply
leaving one context and entering the next. The SDK has no reconnect of its own (its ``reconnect`` flag is
declarative only); this module owns that. The SDK also masks the key in the ``ApiError`` it raises and in
the ``websockets`` handshake logs; we still re-raise our own error without the SDK's text.

One connection per stream (several, one after another, when one drops). Contract:
- Audio is sent as binary PCM s16le (``encoding=linear16``) with ``interim_results``, ``endpointing``,
  ``utterance_end_ms`` and ``vad_events`` on. ``{"type":"KeepAlive"}`` goes out when nothing was sent for
  ``keepalive_s`` (Deepgram closes an idle stream after ~10 s). ``finish`` sends ``Finalize`` then
  ``CloseStream`` and returns once the service closed the stream and every result is delivered.
- ``Results`` with ``is_final=false`` -> a partial (the open utterance's final pieces plus this interim).
  ``is_final=true`` pieces accumulate; the utterance is emitted as final on ``speech_final=true``, on
  ``UtteranceEnd``, or when the stream closes. Word times (seconds since the connection's first audio) become
  stream samples: ``offset + round(t * sample_rate)`` where ``offset`` is the stream sample the connection's
  audio began at.
- Reconnect: the engine keeps every byte sent since ``covered`` -- the end of the last ``is_final`` span
  after which no utterance was open (the end of the last emitted final, or of a silent span). When the socket
  closes abnormally (1006, 1011, or any close before ``finish``) a new connection starts at ``covered`` and
  gets that audio again; the open utterance's pieces are dropped and transcribed afresh, so nothing is lost
  and no final is emitted twice. Deepgram never re-reports a finished span, so results from the new
  connection all lie after ``covered``.
- HTTP 400/401/402/403 on the upgrade, an ``Error`` message, or close code 1008 raise ``EngineError`` (no
  retry). Other failures are retried with backoff; when retries run out ``ConnectionError`` is raised.
  Scope of a refusal: 401/402/403 (key, credit, access), ``Error`` and 1008 (our audio) concern every
  stream (``scope="worker"``). 400 is a query parameter the service does not take, and Deepgram's answer
  does not say which (an unknown language and an unknown model both read "No such model/language/tier
  combination"); of ours only the language differs between streams, so 400 is ``scope="stream"`` -- the
  transcriber treats it as the worker's own when the session asked for the worker's default language.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from deepgram import AsyncDeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.environment import DeepgramClientEnvironment
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidHandshake

from stt_workers.cloud_support import END_OF_RESULTS, PcmBuffer, Settled, SettledResults, redact, retry_delays
from stt_workers.engine import Word
from stt_workers.streaming import EngineError, RecognizedSpeech

log = logging.getLogger(__name__)

_REFUSED = {400, 401, 402, 403}
_CHUNK_BYTES = 8192  # resent audio goes out in pieces this size
_FINISH_TIMEOUT_S = 30.0
_HEALTHY_S = 10.0  # a connection that lived this long resets the count of failed attempts


@dataclass
class _Piece:
    """One ``is_final`` result of the open utterance, in stream samples."""

    words: list[tuple[str, int, int, float]]  # (word, start sample, end sample, confidence)


@dataclass
class _Utterance:
    pieces: list[_Piece] = field(default_factory=list)
    end: int = 0  # stream sample where the last piece's span ends

    def words(self) -> list[tuple[str, int, int, float]]:
        return [w for p in self.pieces for w in p.words]


class DeepgramEngine:
    name = "deepgram"

    def __init__(self, api_key: str, model: str = "nova-3", base_url: str | None = None, endpointing_ms: int = 300,
                 utterance_end_ms: int = 1000, keepalive_s: float = 5.0) -> None:  # fmt: skip
        self.model = model
        self._api_key = api_key
        self._base_url = base_url
        self._endpointing_ms = endpointing_ms
        self._utterance_end_ms = utterance_end_ms
        self._keepalive_s = keepalive_s

    def __repr__(self) -> str:
        return f"DeepgramEngine(model={self.model!r}, base_url={self._base_url!r})"

    def _client(self) -> AsyncDeepgramClient:
        if self._base_url is None:
            return AsyncDeepgramClient(api_key=self._api_key)
        base = self._base_url.rstrip("/")
        http = base.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
        env = DeepgramClientEnvironment(base=http, production=base, agent=base, agent_rest=http)
        return AsyncDeepgramClient(api_key=self._api_key, environment=env)

    async def open(self, sample_rate: int, language: str, first_sample: int = 0) -> DeepgramSession:
        params = {
            "model": self.model, "encoding": "linear16", "sample_rate": sample_rate, "channels": 1,
            "language": language, "punctuate": "true", "interim_results": "true",
            "endpointing": self._endpointing_ms, "utterance_end_ms": self._utterance_end_ms, "vad_events": "true",
        }  # fmt: skip
        session = DeepgramSession(self._client(), params, sample_rate, first_sample, self._keepalive_s, self._api_key)
        await session.start()
        return session


def refusal(status: int, language: str) -> EngineError:
    """The ``EngineError`` for an upgrade Deepgram refused with HTTP ``status`` (one of ``_REFUSED``)."""
    if status == 400:
        return EngineError(f"Deepgram refused the stream (HTTP 400: a request parameter such as language "
                           f"{language!r} or the model is not supported)", scope="stream")  # fmt: skip
    return EngineError(f"Deepgram refused the stream (HTTP {status})")


class DeepgramSession(SettledResults):
    """One stream on Deepgram; see the module docstring for the contract."""

    def __init__(self, client: AsyncDeepgramClient, params: dict[str, Any], sample_rate: int, first_sample: int,
                 keepalive_s: float, secret: str) -> None:  # fmt: skip
        self._client = client
        self._params = params
        self._rate = sample_rate
        self._keepalive_s = keepalive_s
        self._secret = secret
        self._audio = PcmBuffer(first_sample)  # from ``covered`` on: what a new connection must be sent
        self._covered = first_sample
        self._settled = first_sample  # ``_covered`` as far as the results iterator has handed it on
        self._offset = first_sample  # stream sample of the current connection's first audio
        self._utterance = _Utterance()
        self._socket: Any = None
        self._lock = asyncio.Lock()  # orders audio, resends and control messages on the socket
        self._last_sent = time.monotonic()
        self._finishing = False
        self._failure: Exception | None = None
        self._connected = asyncio.Event()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._attached_at: float | None = None

    async def start(self) -> None:
        """Connect (retrying transient failures); raises EngineError if the service refuses the stream."""
        self._task = asyncio.create_task(self._run(), name="deepgram-session")
        waiter = asyncio.create_task(self._connected.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._failure is not None:
            raise self._failure

    async def send(self, pcm: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        async with self._lock:
            self._audio.append(pcm)
            if self._socket is not None:
                with contextlib.suppress(ConnectionClosed):  # the receiver reconnects and resends
                    await self._socket.send_media(pcm)
                    self._last_sent = time.monotonic()

    async def finish(self) -> None:
        async with self._lock:
            self._finishing = True
            if self._socket is not None:
                with contextlib.suppress(ConnectionClosed):
                    await self._socket.send_finalize()
                    await self._socket.send_close_stream()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), _FINISH_TIMEOUT_S)
            except TimeoutError:
                self._fail(TimeoutError(f"Deepgram did not close the stream within {_FINISH_TIMEOUT_S:.0f} s"))
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._failure is not None:
            raise self._failure

    async def close(self) -> None:
        """Drop the connection without Finalize; undelivered results are lost (see ``settled_sample``)."""
        self._finishing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the connection loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        delays = retry_delays()
        failures = 0
        try:
            while True:
                self._attached_at = None
                try:
                    if await self._connection():
                        return
                except EngineError:
                    raise
                except ApiError as exc:
                    if exc.status_code in _REFUSED:
                        raise refusal(exc.status_code, str(self._params.get("language"))) from None
                    log.warning("deepgram upgrade failed (HTTP %s); retrying", exc.status_code)
                except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                    log.warning("deepgram connection lost (%s); reconnecting", type(exc).__name__)
                if self._attached_at is not None and time.monotonic() - self._attached_at >= _HEALTHY_S:
                    failures = 0  # it worked for a while: this is a new incident, not the same one again
                if failures >= len(delays):
                    raise ConnectionError("Deepgram: could not reconnect; giving up")
                await asyncio.sleep(delays[failures])
                failures += 1
        except Exception as exc:  # delivered to the results iterator
            self._fail(exc)
        except BaseException:
            self._fail(ConnectionError("Deepgram session cancelled"))
            raise
        finally:
            self._socket = None

    def _fail(self, exc: Exception) -> None:
        if self._failure is None:
            self._failure = exc
            self._queue.put_nowait(exc)

    async def _connection(self) -> bool:
        """One WebSocket: attach, resend, receive. True when the stream ended as asked (after ``finish``)."""
        async with self._client.listen.v1.connect(**self._params) as socket:
            async with self._lock:
                self._offset = self._covered
                self._utterance = _Utterance()  # its audio is resent: the new connection reports it again
                pending = self._audio.slice(self._covered)
                for i in range(0, len(pending), _CHUNK_BYTES):
                    await socket.send_media(pending[i : i + _CHUNK_BYTES])
                if self._finishing:
                    await socket.send_finalize()
                    await socket.send_close_stream()
                self._last_sent = time.monotonic()
                self._socket = socket
            self._attached_at = time.monotonic()
            self._connected.set()
            keepalive = asyncio.create_task(self._keepalive(socket))
            try:
                async for message in socket:
                    self._handle(message)
            except ConnectionClosedError as exc:
                if exc.rcvd is not None and exc.rcvd.code == 1008:
                    raise EngineError(f"Deepgram closed the stream: {redact(exc.rcvd.reason, self._secret)}") from None
                raise
            finally:
                keepalive.cancel()
                self._socket = None
        if not self._finishing:
            log.warning("deepgram closed the stream before it was finished; reconnecting")
            return False
        self._emit_final()
        self._queue.put_nowait(END_OF_RESULTS)
        return True

    async def _keepalive(self, socket: Any) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(max(0.05, self._last_sent + self._keepalive_s - time.monotonic()))
                if time.monotonic() - self._last_sent >= self._keepalive_s:
                    async with self._lock:
                        await socket.send_keep_alive()
                        self._last_sent = time.monotonic()

    # -- messages -------------------------------------------------------------------------------------------

    def _handle(self, message: Any) -> None:
        kind = getattr(message, "type", None)
        if kind == "Results":
            self._on_results(message)
        elif kind == "UtteranceEnd":
            self._emit_final()
        elif kind == "Error":
            text = redact(f"{message.variant}: {message.description}", self._secret)
            raise EngineError(f"Deepgram error {text}")

    def _on_results(self, message: Any) -> None:
        alternative = message.channel.alternatives[0]
        words = [
            (w.punctuated_word or w.word, self._sample(w.start), self._sample(w.end), float(w.confidence))
            for w in alternative.words
        ]
        if not message.is_final:
            if words or self._utterance.pieces:
                self._queue.put_nowait(self._speech(self._utterance.words() + words, final=False))
            return
        span_end = self._sample(message.start + message.duration)
        if words:
            self._utterance.pieces.append(_Piece(words))
        self._utterance.end = max(self._utterance.end, span_end)
        if message.speech_final or not self._utterance.pieces:
            self._emit_final()

    def _emit_final(self) -> None:
        words = self._utterance.words()
        if words:
            self._queue.put_nowait(self._speech(words, final=True))
        self._covered = max(self._covered, self._utterance.end)
        self._queue.put_nowait(Settled(self._covered))
        self._audio.trim(self._covered)
        self._utterance = _Utterance()

    def _sample(self, seconds: float) -> int:
        return self._offset + round(seconds * self._rate)

    def _speech(self, words: list[tuple[str, int, int, float]], final: bool) -> RecognizedSpeech:
        start = words[0][1]
        return RecognizedSpeech(
            final=final,
            start_sample=start,
            end_sample=max(w[2] for w in words),
            text=" ".join(w[0] for w in words),
            words=tuple(Word(w, (s - start) / self._rate, (e - start) / self._rate, c) for w, s, e, c in words),
            confidence=sum(w[3] for w in words) / len(words),
        )
