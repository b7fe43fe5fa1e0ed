"""Closes a socket that sends nothing for a while (it would hold its speaker's slot forever), cheaply.

``asyncio.wait_for`` around each receive cost every frame a task, a timer and a wait; here a connection
has one timer, moved only when it fires: a frame costs two stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from ingest.protocol import CloseCode, ProtocolError


class IdleWatch:
    """``with IdleWatch(idle_s) as idle: await idle.receive(ws.receive, "audio")`` raises ProtocolError(IDLE)
    once one wait for a message has lasted ``idle_s`` (time spent elsewhere, e.g. sending, does not count).
    Use it in the task that receives."""

    def __init__(self, idle_s: float):
        self._idle_s = idle_s
        self._waiting_since: float | None = None
        self._expired = False

    def __enter__(self) -> IdleWatch:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._handle = self._loop.call_at(self._loop.time() + self._idle_s, self._check)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._handle.cancel()

    async def receive(self, receive: Callable[[], Awaitable[dict[str, Any]]], awaited: str) -> dict[str, Any]:
        self._waiting_since = self._loop.time()
        try:
            return await receive()
        except asyncio.CancelledError:
            if self._expired and self._task is not None and self._task.uncancel() == 0:
                raise ProtocolError(CloseCode.IDLE, f"no {awaited} for {self._idle_s:g} s") from None
            raise
        finally:
            self._waiting_since = None

    def _check(self) -> None:
        now = self._loop.time()
        since = self._waiting_since
        if since is not None and now - since >= self._idle_s:
            self._expired = True
            if self._task is not None:
                self._task.cancel()
            return
        self._handle = self._loop.call_at((now if since is None else since) + self._idle_s, self._check)
