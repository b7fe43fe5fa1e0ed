"""The one interface every enrichment backend implements, and the registry that names them.

A backend takes a whole ``MeetingTranscript`` and returns an ``Enrichment``; it must not mutate its input
and must say its own name in the result. ``local`` (enrichment/local.py) is offline and deterministic;
``openai`` (any OpenAI-compatible chat-completions endpoint) and ``watsonx`` (IBM watsonx.ai) call a
language model and fall back to ``local`` when it fails (enrichment/fallback.py).

Streaming: ``enrich`` may be given ``on_summary_chunk``; it then calls it, before returning, with the pieces
of ``summary.detailed`` in order as it produces them, so a caller (running ``enrich`` in a thread) can show
the summary while it is written. The pieces joined are ``summary.detailed``. An empty piece
(``SUMMARY_RESTART``) means "forget the pieces so far, the summary starts again": a remote backend that
failed mid-stream is replaced by the local backend, whose pieces follow it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from enrichment.model import Enrichment, MeetingTranscript
from palaver.enrichment_backends import unknown_backend

if TYPE_CHECKING:
    from palaver.settings import Settings

SummaryChunkCallback = Callable[[str], None]
SUMMARY_RESTART = ""  # the one empty piece: what came before is void, the summary starts again


@runtime_checkable
class EnrichmentBackend(Protocol):
    name: str

    def enrich(self, transcript: MeetingTranscript, on_summary_chunk: SummaryChunkCallback | None = None) -> Enrichment:
        """Summary, action items, keywords, mood, agenda and metrics of the whole meeting; the detailed
        summary's pieces go to ``on_summary_chunk`` (if given) as they are made, before this returns."""
        ...


class UnknownBackendError(ValueError):
    """A backend name that is not registered, or a remote backend whose settings are missing."""


def _local(settings: Settings | None) -> EnrichmentBackend:
    from enrichment.local import LocalBackend

    return LocalBackend()


def _openai(settings: Settings | None) -> EnrichmentBackend:
    from enrichment.openai_backend import openai_backend

    return _remote("openai", settings, openai_backend)


def _watsonx(settings: Settings | None) -> EnrichmentBackend:
    from enrichment.watsonx_backend import watsonx_backend

    return _remote("watsonx", settings, watsonx_backend)


def _remote(name: str, settings: Settings | None, build: Callable[[Settings], EnrichmentBackend]) -> EnrichmentBackend:
    from enrichment.fallback import with_fallback

    if settings is None:
        raise UnknownBackendError(f"the {name} backend needs the settings (PALAVER_ENRICHMENT_*) passed in")
    backend = build(settings)
    return with_fallback(backend) if settings.enrichment_fallback else backend


BACKENDS: dict[str, Callable[[Settings | None], EnrichmentBackend]] = {
    "local": _local, "openai": _openai, "watsonx": _watsonx,
}  # fmt: skip


def backend_named(name: str, settings: Settings | None = None) -> EnrichmentBackend:
    """The backend registered as ``name``, configured from ``settings`` (read once by the entrypoint; the
    remote backends need them, ``local`` does not). Raises UnknownBackendError naming the ones there are,
    or naming the missing setting of a remote backend."""
    refused = unknown_backend(name)
    if refused is not None or name not in BACKENDS:
        raise UnknownBackendError(refused or f"enrichment backend {name!r} is named but not registered")
    return BACKENDS[name](settings)
