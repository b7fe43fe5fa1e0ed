"""Deterministic ids: re-processing the same input yields the same ids, so every write is an upsert."""

from __future__ import annotations

import functools
import hashlib
import re

_ID_PART = re.compile(r"[A-Za-z0-9._-]{1,64}")


def is_valid_id_part(value: str) -> bool:
    """Meeting and speaker ids: 1-64 characters of letters, digits, ``.``, ``_`` or ``-`` (no ``/``)."""
    return _ID_PART.fullmatch(value) is not None


def stream_id(meeting_id: str, speaker_id: str) -> str:
    """One speaker in one meeting. Audio is keyed by it, so one STT worker owns a stream."""
    return f"{meeting_id}/{speaker_id}"


def _digest(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=12).hexdigest()


def utterance_id(stream: str, start_sample: int) -> str:
    return "utt_" + _digest(stream, start_sample)


@functools.lru_cache(maxsize=65536)  # the merger regroups a meeting's live tail on every event
def dialogue_id(meeting_id: str, first_utterance_id: str) -> str:
    return "dlg_" + _digest(meeting_id, first_utterance_id)


def event_id(kind: str, *parts: object) -> str:
    return "evt_" + _digest(kind, *parts)


def transcript_id(meeting_id: str, run: str) -> str:
    """The merged transcript of one meeting as one run (engine:model) produced it."""
    return "trn_" + _digest(meeting_id, run)


def edit_id(meeting_id: str, target: str, idempotency_key: str) -> str:
    """A human edit's id: a retried request with the same idempotency key is the same edit."""
    return "edt_" + _digest(meeting_id, target, idempotency_key)


def user_id(idempotency_key: str) -> str:
    """A user's id: a retried create with the same idempotency key is the same user."""
    return "usr_" + _digest("user", idempotency_key)


def chat_message_id(meeting_id: str, user_id: str, idempotency_key: str) -> str:
    """A chat message's id: a retried post with the same idempotency key is the same message."""
    return "msg_" + _digest(meeting_id, user_id, idempotency_key)


def meeting_id(owner_id: str, idempotency_key: str) -> str:
    """A meeting's id, made by the server: a retried create with the same key is the same meeting."""
    return "mtg_" + _digest("meeting", owner_id, idempotency_key)


def enrichment_id(meeting_id: str, run: str, revision: int) -> str:
    """One enrichment result: the same transcript revision enriched again by the same run is the same one."""
    return "enr_" + _digest(meeting_id, run, revision)


def action_item_id(meeting_id: str, run: str, first_dialogue_id: str, ordinal: int) -> str:
    """A task found by an enrichment run: by the dialogue it starts in and its place among that dialogue's
    tasks, so a later revision of the same run keeps its id (and the human edits made to it)."""
    return "act_" + _digest(meeting_id, run, first_dialogue_id, ordinal)
