"""``palaver replay --from dialogues``: enrich one transcript run again, a replay's included, into the
enrichment run ``<transcript run>/<backend>`` (``enrichment.insights.enrichment_run``).

What follows the merger is enrichment: summary, action items, keywords, mood, agenda and metrics, made by
the enrichment service from a run's placed dialogues in the store. A replay from the dialogues does not
run a backend itself: it asks the running enrichment service, with an ``enrichment.requested`` event that
names the run (``run``) and the backend, as ``POST /v1/meetings/{m}/enrichment`` does for the live run.
The service serves it beside live meetings, with its own limit on jobs at once, and writes the result as
any other (``meeting.insights`` on the insights topic, then the store).

Replaying the same thing twice changes nothing: the request's id derives from the meeting, the run, the
backend and the run's placed dialogues (its watermark's count), and before asking, the replay looks on the
insights topic for a final result of that enrichment run covering as many placed dialogues; when there is
one it asks nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from enrichment.backend import BACKENDS
from palaver import ids
from palaver.events import MeetingWatermarkV1, decode_on
from palaver.events.codec import DecodeError
from palaver.events.insights_v1 import EnrichmentRequestedV1, MeetingInsightsV1
from palaver.events.registry import DIALOGUES, INSIGHTS
from palaver.settings import Settings

BACKEND_SETTING = "enrichment_backend"
REQUESTED_BY = "palaver-replay"  # not a user: the operator's command


class EnrichReplayError(ValueError):
    """A ``--set`` a replay from the dialogues cannot take; the message says why."""


def replay_backend(base: Settings, sets: Mapping[str, str]) -> str:
    """The backend a replay from the dialogues asks for: ``--set enrichment_backend=NAME``, else the
    environment's ``PALAVER_ENRICHMENT_BACKEND``. Raises EnrichReplayError for another setting or a backend
    that is not registered."""
    for key in sets:
        if key != BACKEND_SETTING:
            why = ("the merger's: replay the transcripts (--from transcripts)" if key.startswith("merger_") else
                   "it decides the transcription: replay the audio (--from audio)" if key in Settings.model_fields
                   else "no such setting")  # fmt: skip
            raise EnrichReplayError(f"--set {key}: {why}; a replay from the dialogues takes {BACKEND_SETTING}")
    backend = sets.get(BACKEND_SETTING) or base.enrichment_backend
    if backend not in BACKENDS:
        raise EnrichReplayError(f"--set {BACKEND_SETTING}={backend}: not a backend (there are {', '.join(BACKENDS)})")
    return backend


def _decoded(spec: object, values: Iterable[bytes]) -> Iterable[object]:
    for value in values:
        try:
            yield decode_on(spec, value)  # type: ignore[arg-type]
        except DecodeError:  # a bad record: its consumer dead-letters it; nothing of a run to learn from it
            continue


def dialogue_runs(values: Iterable[bytes]) -> list[str]:
    """The runs of the meeting's records on the dialogues topic, in the order they first appear."""
    return list(dict.fromkeys(getattr(e, "run", "") for e in _decoded(DIALOGUES, values) if getattr(e, "run", "")))


def placed_dialogues(values: Iterable[bytes], run: str) -> int:
    """How many of ``run``'s dialogues are placed: its newest watermark's count (0: none yet)."""
    counts = [e.final_dialogues for e in _decoded(DIALOGUES, values)
              if isinstance(e, MeetingWatermarkV1) and e.run == run]  # fmt: skip
    return max(counts, default=0)


def enriched_already(values: Iterable[bytes], enrichment_run: str, placed: int) -> bool:
    """Whether the insights topic's records ``values`` hold a final result of ``enrichment_run`` covering
    ``placed`` placed dialogues or more."""
    return any(isinstance(e, MeetingInsightsV1) and e.run == enrichment_run and e.final
               and e.transcript_revision >= placed for e in _decoded(INSIGHTS, values))  # fmt: skip


def replay_request(meeting_id: str, run: str, backend: str, placed: int, now_ms: int) -> EnrichmentRequestedV1:
    """The request to enrich ``run`` with ``backend``; the same run, backend and placed count, the same id."""
    return EnrichmentRequestedV1(
        event_id=ids.event_id("enrichment.requested", meeting_id, "replay", run, backend, placed),
        meeting_id=meeting_id, reason="requested", backend=backend, run=run, requested_by=REQUESTED_BY,
        requested_at_ms=now_ms,
    )  # fmt: skip
