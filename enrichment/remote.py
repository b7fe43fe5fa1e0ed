"""A backend that asks a language model (over a ``ChatCompletions`` endpoint) for what a meeting gives.

Per part of the transcript (prompts.pack: at most ``max_chars`` characters each, so a long meeting is read
whole, never cut at the context limit) one structured request gives the main points, notes, action items,
keywords and topics (map). With several parts, one more request gives the brief and keywords of the whole
meeting from the parts' main points (reduce). Last, the detailed summary is streamed from the transcript
(one part) or from the parts' notes (several), each piece handed to ``on_summary_chunk`` as it comes. Mood
and metrics come from the local code (VADER; metrics are arithmetic on the timings, no model needed).

Everything is asked before the stream starts, so once the summary has streamed nothing is left to fail.
Failures raise RemoteCallError after the retries (http_calls.py); fallback.py turns that into the local
backend's result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import httpx

from enrichment import answers, prompts
from enrichment.answers import Extraction, InvalidOutput, Reduction
from enrichment.backend import SummaryChunkCallback
from enrichment.http_calls import RemoteCallError, RetryPolicy, call_with_retries
from enrichment.metrics import meeting_metrics
from enrichment.model import Enrichment, MeetingTranscript, Summary
from enrichment.mood import meeting_mood

A = TypeVar("A")


class ChatModel(Protocol):
    name: str

    def complete_json(self, system: str, user: str, schema_name: str, schema: dict[str, Any]) -> str: ...

    def stream_text(self, system: str, user: str, on_delta: Callable[[str], None]) -> None: ...


class RemoteBackend:
    """``max_chars``: most transcript characters in one request (PALAVER_ENRICHMENT_MAX_CHARS)."""

    def __init__(self, model: ChatModel, max_chars: int, policy: RetryPolicy,
                 sleep: Callable[[float], None] | None = None) -> None:  # fmt: skip
        self.model = model
        self.name = model.name
        self.max_chars = max_chars
        self.policy = policy
        self._sleep = sleep

    def enrich(self, transcript: MeetingTranscript, on_summary_chunk: SummaryChunkCallback | None = None) -> Enrichment:
        """As the interface says. Raises RemoteCallError when the model fails after the retries."""
        dialogues = prompts.ordered_dialogues(transcript)
        ordered = transcript.model_copy(update={"dialogues": tuple(dialogues)})
        people = ordered.people()
        parts = prompts.pack(prompts.transcript_lines(dialogues, self.max_chars), self.max_chars)
        schema = answers.extraction_schema(people)
        found: list[Extraction] = [
            self._json(prompts.extraction_prompt(ordered, part, i, len(parts)), "meeting_notes", schema, Extraction)
            for i, part in enumerate(parts)
        ]
        items = answers.action_items([it for e in found for it in e.action_items], dialogues, people)
        topics = answers.agenda([t for e in found for t in e.topics], dialogues, ordered.agenda)
        phrases = [k for e in found for k in e.keywords]
        if len(parts) == 1:
            brief, key_phrases = found[0].brief, phrases
            source = "Transcript:\n" + "\n".join(line.text for line in parts[0])
        else:
            prompt = prompts.reduce_prompt(ordered, [e.brief for e in found], answers.keyword_list(phrases, people, 60))
            reduced = self._json(prompt, "meeting_brief", answers.REDUCE_SCHEMA, Reduction)
            brief, key_phrases = reduced.brief, reduced.keywords
            source = "Notes, part by part:\n" + "\n\n".join(
                f"Part {i + 1}:\n" + "\n".join(f"- {n}" for n in e.notes) for i, e in enumerate(found))
            if len(source) > self.max_chars:
                raise RemoteCallError("client_error", f"the notes of {len(parts)} parts ({len(source)} characters) "
                                      f"do not fit one summary request of {self.max_chars}")  # fmt: skip
        detailed = self._stream(prompts.summary_prompt(ordered, source, topics, items), on_summary_chunk)
        return Enrichment(
            backend=self.name,
            summary=Summary(brief=answers.bullets(brief), detailed=detailed),
            action_items=tuple(items),
            keywords=tuple(answers.keyword_list(key_phrases, people)),
            mood=meeting_mood(dialogues),
            agenda=tuple(topics),
            metrics=meeting_metrics(dialogues),
        )

    def _retrying(self, kind: str, request: Callable[[], A]) -> A:
        if self._sleep is None:
            return call_with_retries(self.name, kind, request, self.policy)
        return call_with_retries(self.name, kind, request, self.policy, self._sleep)

    def _json(self, prompt: str, schema_name: str, schema: dict[str, Any], answer: type[A]) -> A:
        def attempt() -> A:
            content = self.model.complete_json(prompts.SYSTEM, prompt, schema_name, schema)
            try:
                return answers.parse_answer(content, answer)  # type: ignore[arg-type, no-any-return]
            except InvalidOutput as exc:
                raise RemoteCallError("invalid_output", str(exc)) from None

        return self._retrying("json", attempt)

    def _stream(self, prompt: str, on_summary_chunk: SummaryChunkCallback | None) -> str:
        handed_on = False

        def attempt() -> str:
            nonlocal handed_on
            pieces: list[str] = []

            def on_delta(piece: str) -> None:
                nonlocal handed_on
                pieces.append(piece)
                if on_summary_chunk is not None:
                    handed_on = True
                    on_summary_chunk(piece)

            try:
                self.model.stream_text(prompts.SYSTEM, prompt, on_delta)
            except (RemoteCallError, httpx.TransportError) as exc:
                if handed_on:  # the reader has part of this summary: no second try, the caller falls back
                    error = exc if isinstance(exc, RemoteCallError) else _transport_error(exc)
                    error.retryable = False
                    raise error from None
                raise
            text = "".join(pieces)
            if not text.strip():
                raise RemoteCallError("invalid_output", "the summary is empty", retryable=not handed_on)
            return text

        return self._retrying("stream", attempt)


def _transport_error(exc: httpx.TransportError) -> RemoteCallError:
    reason = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
    return RemoteCallError(reason, f"{type(exc).__name__} after part of the summary was streamed")
