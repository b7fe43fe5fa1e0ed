"""A meeting's runs as ClickHouse stores them: which there are, what each holds, their final dialogues.

A run appears once the merger has made a dialogue of it (the ``dialogues`` table); its utterances give its
size and timing (a ``~merge`` run's are those of the run it merged again: ``palaver.runs.merged_from``). Reads use FINAL, so a row written twice (a second identical replay) counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

from palaver.run_compare import Turn
from palaver.runs import is_replay, live_run_sql, merged_from_sql
from palaver.store.client import Store


@dataclass(frozen=True)
class RunSummary:
    """One run of a meeting. ``media_*``: the span of its utterances on the meeting's media timeline;
    ``first_stored_ms``/``last_stored_ms``: when its first and last utterance reached the store (wall
    clock, ms), so ``pace`` = media time over that time: about the speaking pace for a live run, the
    replay's speed for a replay."""

    run: str
    engine: str
    model: str
    final_dialogues: int
    live_dialogues: int
    utterances: int
    words: int
    speakers: int
    media_start_ms: int | None
    media_end_ms: int | None
    first_stored_ms: int | None
    last_stored_ms: int | None

    @property
    def replay(self) -> bool:
        return is_replay(self.run)

    @property
    def pace(self) -> float | None:
        """Media time over the time its utterances took to be stored (None: fewer than two, or no span)."""
        if None in (self.media_start_ms, self.media_end_ms, self.first_stored_ms, self.last_stored_ms):
            return None
        stored = self.last_stored_ms - self.first_stored_ms  # type: ignore[operator]
        media = self.media_end_ms - self.media_start_ms  # type: ignore[operator]
        return media / stored if stored > 0 and self.utterances > 1 else None


async def meeting_runs(store: Store, meeting_id: str) -> list[RunSummary]:
    """The meeting's runs, live runs first, each group in the order they were first stored."""
    db = store.database
    rows = await store.aquery(
        f"""SELECT d.run AS run, d.final AS final_dialogues, d.live AS live_dialogues, d.first AS first_dialogue,
                   ifNull(u.engine, '') AS engine, ifNull(u.model, '') AS model, ifNull(u.n, 0) AS utterances,
                   ifNull(u.words, 0) AS words, ifNull(u.speakers, 0) AS speakers, u.media_start AS media_start_ms,
                   u.media_end AS media_end_ms, u.first_stored AS first_stored_ms, u.last_stored AS last_stored_ms
            FROM (SELECT run, {merged_from_sql('run')} AS source, countIf(status = 'final') AS final,
                         countIf(status = 'live') AS live, min(inserted_at) AS first
                  FROM {db}.dialogues FINAL WHERE meeting_id = {{m:String}} AND status != 'retracted'
                  GROUP BY run) AS d
            LEFT JOIN (SELECT run, any(engine) AS engine, any(model) AS model, count() AS n,
                              sum(length(splitByWhitespace(text))) AS words, uniqExact(speaker_id) AS speakers,
                              min(start_ms) AS media_start, max(end_ms) AS media_end,
                              toUnixTimestamp64Milli(min(inserted_at)) AS first_stored,
                              toUnixTimestamp64Milli(max(inserted_at)) AS last_stored
                       FROM {db}.utterances FINAL WHERE meeting_id = {{m:String}} GROUP BY run) AS u
                ON u.run = d.source
            ORDER BY {live_run_sql('d.run')} DESC, first_dialogue, run
            SETTINGS join_use_nulls = 1""",
        {"m": meeting_id},
    )
    return [
        RunSummary(r["run"], r["engine"], r["model"], r["final_dialogues"], r["live_dialogues"], r["utterances"],
                   r["words"], r["speakers"], *(_int(r[k]) for k in ("media_start_ms", "media_end_ms",
                                                                     "first_stored_ms", "last_stored_ms")))
        for r in rows
    ]  # fmt: skip


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


async def final_turns(store: Store, meeting_id: str, run: str) -> list[Turn]:
    """The run's final dialogues in media order, with the machine's text."""
    rows = await store.aquery(
        f"""SELECT speaker_id, start_ms, dialogue_text FROM {store.database}.dialogues FINAL
            WHERE meeting_id = {{m:String}} AND run = {{r:String}} AND status = 'final'
            ORDER BY start_ms, speaker_id, dialogue_id""",
        {"m": meeting_id, "r": run},
    )
    return [Turn(r["speaker_id"], r["start_ms"], r["dialogue_text"]) for r in rows]


async def usernames(store: Store, user_ids: list[str]) -> dict[str, str]:
    """The newest username of each of ``user_ids`` that has one (speakers are user ids)."""
    rows = await store.aquery(
        f"""SELECT user_id, argMax(username, version) AS username FROM {store.database}.users
            WHERE has({{ids:Array(String)}}, user_id) GROUP BY user_id""",
        {"ids": user_ids},
    )
    return {r["user_id"]: r["username"] for r in rows if r["username"]}
