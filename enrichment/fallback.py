"""A remote backend that fails still gives the meeting a complete result: ``with_fallback(primary)`` runs
``primary`` and, when it raises, the local backend, with ``fallback`` set on the result to say which backend
failed and why. The failure is logged and counted (palaver_enrichment_fallbacks_total{backend}).

When the primary failed after handing on some of the detailed summary, the reader gets SUMMARY_RESTART (an
empty piece) and then the local backend's pieces: what it had is void, the summary starts again."""

from __future__ import annotations

import logging

from enrichment.backend import SUMMARY_RESTART, EnrichmentBackend, SummaryChunkCallback
from enrichment.local import LocalBackend
from enrichment.model import Enrichment, Fallback, MeetingTranscript
from palaver.metrics import ENRICHMENT_FALLBACKS

log = logging.getLogger(__name__)


class FallbackBackend:
    """``primary``, and ``local`` when it raises. Named as the primary (``palaver enrich --backend openai``);
    the result's ``backend`` says which one made it."""

    def __init__(self, primary: EnrichmentBackend, fallback: EnrichmentBackend | None = None) -> None:
        self.primary = primary
        self.fallback = fallback or LocalBackend()
        self.name = primary.name

    def enrich(self, transcript: MeetingTranscript, on_summary_chunk: SummaryChunkCallback | None = None) -> Enrichment:
        handed_on = False

        def tracking(piece: str) -> None:
            nonlocal handed_on
            handed_on = True
            if on_summary_chunk is not None:
                on_summary_chunk(piece)

        try:
            return self.primary.enrich(transcript, tracking if on_summary_chunk is not None else None)
        except Exception as exc:  # any failure of the primary: the meeting still gets a result
            reason = f"{getattr(exc, 'reason', type(exc).__name__)}: {exc}"
            log.error("enrichment backend %s failed (%s); the %s backend enriches this meeting instead",
                      self.primary.name, reason, self.fallback.name)  # fmt: skip
            ENRICHMENT_FALLBACKS.labels(self.primary.name).inc()
        if handed_on and on_summary_chunk is not None:
            on_summary_chunk(SUMMARY_RESTART)
        result = self.fallback.enrich(transcript, on_summary_chunk)
        return result.model_copy(update={"fallback": Fallback(backend=self.primary.name, reason=reason)})


def with_fallback(primary: EnrichmentBackend) -> FallbackBackend:
    """``primary`` that falls back to the local backend (see the module's docstring)."""
    return FallbackBackend(primary)
