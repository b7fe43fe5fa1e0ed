"""Auto-correct by a language model (the ``openai`` and ``watsonx`` backends' ``ChatModel``).

The dialogues go in batches (enrichment/correction_prompts.py: at most PALAVER_ENRICHMENT_MAX_CHARS
characters each), one structured request per batch, with the same bounded retries as every remote call
(enrichment/http_calls.py: 429 and 5xx with backoff, an answer that is not the JSON asked for once more).
Each corrected text then passes the guard (enrichment/correction_guard.py): one that changes more than
``max_change`` of the words said is rejected, and the local correction stands in for that dialogue.

When a batch fails after its retries, the local correction stands in for its dialogues, and for those of
the batches after it unless the failure was only the answer's form (the model is down or refuses: asking
again for every batch would only wait the retries again). Each stand-in is logged and counted by the
caller (palaver_enrichment_autocorrections_total); the correction's ``note`` says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from enrichment import correction_prompts as prompts
from enrichment.answers import InvalidOutput
from enrichment.correction import Correction, LocalCorrector
from enrichment.correction_guard import word_change
from enrichment.http_calls import RemoteCallError, RetryPolicy, call_with_retries
from enrichment.model import Dialogue, MeetingTranscript
from enrichment.remote import ChatModel

log = logging.getLogger(__name__)


class RemoteCorrector:
    """``max_chars``: most dialogue characters in one request; ``max_change``: the most words a correction
    may change, as a share of the words said (PALAVER_ENRICHMENT_AUTOCORRECT_MAX_CHANGE)."""

    def __init__(self, model: ChatModel, max_chars: int, policy: RetryPolicy, max_change: float,
                 sleep: Callable[[float], None] | None = None) -> None:  # fmt: skip
        self.model = model
        self.name = model.name
        self.max_chars = max_chars
        self.policy = policy
        self.max_change = max_change
        self._sleep = sleep
        self._local = LocalCorrector()

    def correct(self, transcript: MeetingTranscript) -> list[Correction]:
        """As the interface says: the model's corrections where it gave good ones, local ones elsewhere."""
        local = {c.dialogue_id: c.text for c in self._local.correct(transcript)}
        batches, too_long = prompts.batches(transcript.dialogues, self.max_chars)
        out: dict[str, Correction] = {}
        for d in too_long:
            note = f"longer than one request may be ({self.max_chars} characters)"
            out[d.dialogue_id] = Correction(d.dialogue_id, local[d.dialogue_id], "failed", note)
        broken: str | None = None  # why the model is not asked any more
        for batch in batches:
            if broken is None:
                try:
                    answer = self._ask(transcript, batch)
                except RemoteCallError as exc:
                    note = f"{exc.reason}: {exc}"
                    log.error("auto-correct by %s failed (%s); %d dialogues are corrected locally", self.name,
                              note, len(batch))  # fmt: skip
                    if exc.reason != "invalid_output":
                        broken = note
                    out.update({d.dialogue_id: Correction(d.dialogue_id, local[d.dialogue_id], "failed", note)
                                for d in batch})  # fmt: skip
                    continue
                out.update({d.dialogue_id: self._guarded(d, answer[d.dialogue_id], local[d.dialogue_id])
                            for d in batch})  # fmt: skip
            else:
                out.update({d.dialogue_id: Correction(d.dialogue_id, local[d.dialogue_id], "failed", broken)
                            for d in batch})  # fmt: skip
        return [out[d.dialogue_id] for d in transcript.dialogues]

    def _guarded(self, dialogue: Dialogue, corrected: str, local: str) -> Correction:
        text = " ".join(corrected.split())
        change = word_change(dialogue.text, text, self.max_change)
        if change <= self.max_change:
            return Correction(dialogue.dialogue_id, text, "remote")
        note = f"the model changed more than {self.max_change:.0%} of the words"
        log.warning("auto-correct by %s: %s of dialogue %s; it is corrected locally", self.name, note,
                    dialogue.dialogue_id)  # fmt: skip
        return Correction(dialogue.dialogue_id, local, "rejected", note)

    def _ask(self, transcript: MeetingTranscript, batch: Sequence[Dialogue]) -> dict[str, str]:
        ids = [d.dialogue_id for d in batch]
        prompt = prompts.correction_prompt(transcript, batch)
        schema = prompts.correction_schema(ids)

        def attempt() -> dict[str, str]:
            content = self.model.complete_json(prompts.SYSTEM, prompt, prompts.SCHEMA_NAME, schema)
            try:
                return prompts.parse_corrections(content, ids)
            except InvalidOutput as exc:
                raise RemoteCallError("invalid_output", str(exc)) from None

        if self._sleep is None:
            return call_with_retries(self.name, "json", attempt, self.policy)
        return call_with_retries(self.name, "json", attempt, self.policy, self._sleep)
