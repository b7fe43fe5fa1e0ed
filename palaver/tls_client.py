"""TLS for Palaver's own clients of its API (``palaver demo``): which server certificates they trust.

They verify the server's certificate and host name, always, against the system's CAs plus
``PALAVER_TLS_CA_FILE`` (``palaver demo --ca-file``) when given: the way to trust a self-signed or private-CA
certificate. (The one client that does not verify is ``palaver up``'s readiness probe of the web process it
started itself on this machine: see ``stack.up``.)
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, and ``ca_file``'s (PEM) when given."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def websocket_options(url: str, context: ssl.SSLContext | None) -> dict[str, Any]:
    """``websockets.connect`` keyword arguments for ``url``: the context for a ``wss://`` URL (websockets
    refuses one for ``ws://``), nothing otherwise."""
    return {"ssl": context} if context is not None and url.startswith("wss://") else {}
