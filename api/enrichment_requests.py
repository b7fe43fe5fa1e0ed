"""Asking the enrichment service (enrichment/service.py) for a meeting's enrichment: an
``enrichment.requested`` event on the ``enrichment.requests`` topic, keyed by meeting (co-partitioned with
``dialogues``, so the consumer that owns the meeting's activity gets it)."""

from __future__ import annotations

from fastapi import Request

from palaver import ids
from palaver.events import encode
from palaver.events.insights_v1 import EnrichmentRequestedV1, RequestReason
from palaver.events.registry import ENRICHMENT_REQUESTS, topic_name


async def request_enrichment(request: Request, meeting_id: str, reason: RequestReason, user_id: str, at_ms: int,
                             backend: str | None = None, dialogue_id: str | None = None,
                             idempotency_key: str | None = None) -> EnrichmentRequestedV1:  # fmt: skip
    """Publish the request and wait until the broker has it. Its id derives from ``idempotency_key`` when
    given (a retry is the same request: the service keeps one per id while it waits), else from the time."""
    made_of = at_ms if idempotency_key is None else f"key:{idempotency_key}"
    event = EnrichmentRequestedV1(
        event_id=ids.event_id("enrichment.requested", meeting_id, reason, made_of, dialogue_id or ""),
        meeting_id=meeting_id, reason=reason, backend=backend, dialogue_id=dialogue_id, requested_by=user_id,
        requested_at_ms=at_ms,
    )  # fmt: skip
    settings = request.app.state.settings
    topic = topic_name(settings.topic_namespace, ENRICHMENT_REQUESTS.name)
    await request.app.state.producer.send_and_wait(topic, encode(event), key=meeting_id.encode())
    return event
