"""Auto-correct behind one small interface: a ``Corrector`` takes the dialogues to correct with the meeting's
vocabulary (a ``MeetingTranscript``: its dialogues are the texts, its participants, title and agenda the
vocabulary) and gives one ``Correction`` per dialogue. It never fails for a backend's sake: where the
language model fails, or its answer changes too many words, the local correction stands in and the
correction says so (``outcome``, ``note``).

``local`` is enrichment/autocorrect.py's rules; ``openai`` and ``watsonx`` ask their model
(enrichment/remote_correction.py), configured as their enrichment backends are (PALAVER_ENRICHMENT_*).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from enrichment.autocorrect import autocorrect, known_terms
from enrichment.backend import UnknownBackendError
from enrichment.model import MeetingTranscript
from palaver.enrichment_backends import unknown_backend

if TYPE_CHECKING:
    from palaver.settings import Settings

# remote: the model's text, kept; rejected: the model's text changed too many words; failed: the model
# failed (or the dialogue is too long for one request); local: the local backend was asked.
Outcome = Literal["remote", "rejected", "failed", "local"]


@dataclass(frozen=True)
class Correction:
    """A dialogue's corrected text (the same text when nothing needed a fix); ``note`` says why the local
    correction stood in for the model's, "" when it did not."""

    dialogue_id: str
    text: str
    outcome: Outcome
    note: str = ""


class Corrector(Protocol):
    name: str

    def correct(self, transcript: MeetingTranscript) -> list[Correction]:
        """One correction per dialogue of ``transcript``, in its order. Raises nothing for a backend's
        failure (the local correction stands in); may block on the network (run it in a thread)."""
        ...


class LocalCorrector:
    """The local rules (enrichment/autocorrect.py): names and vocabulary spelled as known, stumbles and
    punctuation fixed."""

    name = "local"

    def correct(self, transcript: MeetingTranscript) -> list[Correction]:
        terms = known_terms(transcript.people(), transcript.title, transcript.agenda)
        return [Correction(d.dialogue_id, autocorrect(d.text, terms), "local") for d in transcript.dialogues]


def corrector_named(name: str, settings: Settings | None = None,
                    sleep: Callable[[float], None] | None = None) -> Corrector:  # fmt: skip
    """The corrector of the enrichment backend ``name``, configured from ``settings`` (the remote ones need
    them; ``sleep`` stands in for time.sleep between retries in tests). Raises UnknownBackendError as
    ``backend_named`` does."""
    refused = unknown_backend(name)
    if refused is not None:
        raise UnknownBackendError(refused)
    if name == "local":
        return LocalCorrector()
    if settings is None:
        raise UnknownBackendError(f"the {name} backend needs the settings (PALAVER_ENRICHMENT_*) passed in")
    from enrichment.openai_backend import openai_backend
    from enrichment.remote_correction import RemoteCorrector
    from enrichment.watsonx_backend import watsonx_backend

    build = {"openai": openai_backend, "watsonx": watsonx_backend}.get(name)
    if build is None:
        raise UnknownBackendError(f"enrichment backend {name!r} is named but cannot auto-correct")
    remote = build(settings)  # the enrichment backend's model, size bound and retry policy
    max_change = settings.enrichment_autocorrect_max_change
    return RemoteCorrector(remote.model, remote.max_chars, remote.policy, max_change, sleep)
