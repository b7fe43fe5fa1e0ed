"""What a webhook sends of an enrichment result, and how it is signed. Pure: no clock, no I/O.

Only a meeting's final result (``final: true``) is sent; rolling results and summary chunks are not. The
body is the JSON of ``webhook_payload``; the headers (``signed_headers``) carry the delivery id (the
result's ``enrichment_id``: delivery is at-least-once, a receiver dedupes on it), the timestamp and
``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``. docs/enrichment.md ("Webhooks") documents both.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from palaver.events.base import EventV
from palaver.events.codec import dumps
from palaver.events.insights_v1 import MeetingInsightsV1

EVENT = "meeting.enriched"
SIGNATURE_HEADER = "X-Palaver-Signature"
TIMESTAMP_HEADER = "X-Palaver-Timestamp"
DELIVERY_HEADER = "X-Palaver-Delivery"


def webhook_payload(event: EventV) -> dict[str, Any] | None:
    """The JSON object sent for ``event``; None when nothing is sent (not a final ``meeting.insights``)."""
    if not isinstance(event, MeetingInsightsV1) or not event.final:
        return None
    return {
        "event": EVENT,
        "meeting_id": event.meeting_id,
        "enrichment_id": event.enrichment_id,
        "run": event.run,
        "trigger": event.trigger,
        "revision": event.revision,
        "summary": {"brief": event.summary_brief, "detailed": event.summary_detailed},
        "action_items": [item.model_dump(mode="json") for item in event.action_items],
        "keywords": list(event.keywords),
        "produced_at_ms": event.produced_at_ms,
    }


def payload_body(payload: dict[str, Any]) -> bytes:
    """The bytes POSTed (and signed): the same for every attempt and every URL."""
    return dumps(payload)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed by ``secret`` over ``"<timestamp>." + body``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt; ``timestamp`` in Unix seconds, fresh for each attempt."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: delivery_id,
    }


def verify(secret: str, timestamp: str | None, given: str | None, body: bytes, now_s: float,
           tolerance_s: float = 300) -> bool:  # fmt: skip
    """What a receiver checks (docs/enrichment.md shows the same in a few lines), given the
    ``X-Palaver-Timestamp`` and ``X-Palaver-Signature`` headers: the signature matches the body and
    timestamp, compared in constant time, and the timestamp is within ``tolerance_s`` of ``now_s`` (a
    captured request replayed later is refused)."""
    if not timestamp or not given or not timestamp.isdigit():
        return False
    if abs(now_s - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(given, signature(secret, int(timestamp), body))
