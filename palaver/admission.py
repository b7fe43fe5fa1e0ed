"""Admission control, as pure logic: how many sockets of one kind (ingest streams, live sockets) a process
holds at once, the refusal beyond that (WebSocket close 1013, "try again later", with a retry hint in the
close reason), and what ``/readyz`` says meanwhile. A process that refuses new sockets keeps serving the
ones it holds at the latency they had; a load balancer that reads ``/readyz`` stops sending it more.

The hint's wording is part of the protocol (docs/ingest-protocol.md, "Close codes"): a close reason that
ends in ``retry after N s``. ``retry_after_s`` reads it back, for the clients.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TRY_AGAIN_LATER = 1013  # RFC 6455: the server is overloaded; the client may try again later
RETRY_AFTER_S = 5  # what a refusal asks a client to wait: long enough for a load balancer to look again
_HINT = re.compile(r"retry after (\d+(?:\.\d+)?) s$")


class Full(Exception):
    """The process holds its most sockets of a kind: close the new one with ``code`` (1013) and ``reason``
    (it ends in the retry hint) before reading anything of it."""

    code = TRY_AGAIN_LATER

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Capacity:
    """The slots of one kind of socket in one process: ``limit`` of them (a setting), ``held`` taken now.

    ``take`` before serving a socket, ``release`` once when it ends (only after a ``take`` that did not
    raise). Single-threaded by design: the event loop runs ``take`` between two awaits, so two sockets
    cannot both take the last slot."""

    what: str  # the held things, plural, for the messages: "streams", "live sockets"
    limit: int
    retry_after_s: int = RETRY_AFTER_S
    held: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"a capacity of {self.limit} {self.what} takes nothing")

    @property
    def full(self) -> bool:
        return self.held >= self.limit

    def check(self) -> None:
        """Raise Full when no slot is free; take nothing."""
        if self.full:
            raise Full(f"this process holds its maximum of {self.limit} {self.what}; retry after {self.retry_after_s} s")

    def take(self) -> None:
        """Take a slot, or raise Full (nothing taken)."""
        self.check()
        self.held += 1

    def release(self) -> None:
        self.held = max(0, self.held - 1)

    def readiness(self) -> str:
        """``ok`` while a new socket would be taken; otherwise why not (for ``/readyz``)."""
        return f"full: {self.held} of {self.limit} {self.what}" if self.full else "ok"


def retry_after_s(reason: str) -> float | None:
    """The wait a close reason asks for (``... retry after 5 s``), or None when it asks for none."""
    found = _HINT.search(reason.strip())
    return float(found.group(1)) if found else None
