"""Who may read Prometheus ``/metrics`` (``PALAVER_METRICS_ACCESS``): ``open`` (anyone who reaches the port),
``local`` (loopback clients only), ``off`` (not served).

The web process's ``/metrics`` judges each request by its client address (uvicorn's, which a trusted local
proxy's ``X-Forwarded-For`` sets); a process without HTTP (stt, merger, the supervisor) serves its metrics
on 127.0.0.1 under ``local`` whatever its ``--host``, and not at all under ``off``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from prometheus_client import make_asgi_app
from starlette.responses import PlainTextResponse

from palaver.settings import Settings

LOOPBACK_HOST = "127.0.0.1"


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (an IP literal; an IPv4-mapped IPv6 address counts as its IPv4) is loopback.
    None or anything unparsable is not."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class LoopbackOnly:
    """ASGI wrapper: ``app`` for loopback clients, 403 for the others."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and not is_loopback(client[0] if client else None):
            refusal = PlainTextResponse("metrics are served to local clients only (PALAVER_METRICS_ACCESS=local)\n",
                                        status_code=403)  # fmt: skip
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def metrics_app(settings: Settings) -> Any | None:
    """The web process's ``/metrics`` ASGI app under the setting, or None when it is off."""
    if settings.metrics_access == "off":
        return None
    app = make_asgi_app()
    return LoopbackOnly(app) if settings.metrics_access == "local" else app


def metrics_host(settings: Settings, host: str) -> str | None:
    """Where a process without HTTP serves its metrics: ``host``, 127.0.0.1 under ``local``, None under ``off``."""
    if settings.metrics_access == "off":
        return None
    return LOOPBACK_HOST if settings.metrics_access == "local" else host
