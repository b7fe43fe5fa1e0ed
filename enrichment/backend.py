"""The one interface every enrichment backend implements, and the registry that names them.

A backend takes a whole ``MeetingTranscript`` and returns an ``Enrichment``; it must not mutate its input
and must say its own name in the result. ``local`` (enrichment/local.py) is offline and deterministic;
remote backends (an OpenAI-compatible endpoint, watsonx) are added beside it under their own names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from enrichment.model import Enrichment, MeetingTranscript
from palaver.enrichment_backends import unknown_backend


@runtime_checkable
class EnrichmentBackend(Protocol):
    name: str

    def enrich(self, transcript: MeetingTranscript, on_summary_chunk: Callable[[str], None] | None = None) -> Enrichment:
        """Summary, action items, keywords, mood, agenda and metrics of the whole meeting. The detailed summary
        goes to ``on_summary_chunk`` piece by piece while it is made (the pieces joined are
        ``summary.detailed``), before ``enrich`` returns."""
        ...


class UnknownBackendError(ValueError):
    """A backend name that is not registered."""


def _local() -> EnrichmentBackend:
    from enrichment.local import LocalBackend

    return LocalBackend()


BACKENDS: dict[str, Callable[[], EnrichmentBackend]] = {"local": _local}


def backend_named(name: str) -> EnrichmentBackend:
    """The backend registered as ``name``; raises UnknownBackendError naming the ones there are (the names
    of ``palaver.enrichment_backends``, which the API checks requests against)."""
    refused = unknown_backend(name)
    if refused is not None or name not in BACKENDS:
        raise UnknownBackendError(refused or f"enrichment backend {name!r} is named but not registered")
    return BACKENDS[name]()
