"""When to enrich a meeting: pure bookkeeping of one meeting's progress, kept by the enrichment service in
its changelog (a JSON dict per meeting, never mutated: each function returns a new one).

Four triggers. ``rolling``: every ``every`` newly placed dialogues of the live run, while the meeting goes
on. ``ended``: the API asked for the meeting's final result when it was ended; it waits until every stream
of the meeting has stopped (the merger's watermark says so) or ``settle_ms`` passed. ``idle``: no record
of the meeting on the dialogues topic (every stream's progress lands there, even silence's) for
``idle_ms``, so a meeting whose clients simply vanished still gets its final result. ``requested``: someone
asked (``POST /v1/meetings/{m}/enrichment``), served at once, with the backend they named. Beside these,
``autocorrect`` requests (``POST /v1/meetings/{m}/autocorrect``) are served at once, one at a time.

Time is the broker's (record timestamps), so a restarted service judges idleness as the first one did.
A final result covers the placed dialogues it saw (``finished``); new dialogues after it (the meeting went
on) make the meeting due again.

Progress does not live forever (``expired``): once nothing is owed (no request waits, a final result covers
every placed dialogue, or nothing was said) and the meeting has had no record for the retention time, the
service forgets it (a tombstone in its changelog). A later record starts fresh progress; a later request
finds none and waits for the run (``needs_run``), which the service then looks up in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from palaver.events.dialogue_update_v1 import DialogueUpdateV1
from palaver.events.insights_v1 import EnrichmentRequestedV1, Trigger
from palaver.events.meeting_watermark_v1 import MeetingWatermarkV1
from palaver.runs import is_replay

ALL_STOPPED_MS = 2**62  # the watermark once every stream of the run has stopped

Progress = dict[str, Any]


@dataclass(frozen=True)
class Policy:
    every: int  # placed dialogues between rolling results
    idle_ms: int
    settle_ms: int
    default_backend: str


@dataclass(frozen=True)
class Job:
    """One enrichment to run now. ``key`` tells jobs of one meeting apart (one of each runs at a time)."""

    meeting_id: str
    run: str  # the transcript run
    trigger: Trigger
    backend: str
    placed: int  # placed dialogues known when it was started (the store may lag a little behind)
    request_id: str | None = None
    dialogue_id: str | None = None  # autocorrect: the one dialogue (None: every dialogue)

    @property
    def final(self) -> bool:
        """The meeting's result (not a rolling one, not an auto-correct)."""
        return self.trigger in ("ended", "idle", "requested")

    @property
    def key(self) -> str:
        return "final" if self.final else self.trigger


def new_progress() -> Progress:
    return {"run": None, "activity_ms": 0, "placed": 0, "stopped": False, "rolled": 0, "finished": -1, "pending": []}


def note_dialogues(progress: Progress, event: DialogueUpdateV1 | MeetingWatermarkV1, at_ms: int) -> Progress:
    """A record of the meeting on the dialogues topic, appended at ``at_ms``: the meeting is active; a
    watermark of its live run says how many dialogues are placed and whether every stream stopped.
    Replay runs are not the meeting's activity."""
    if is_replay(event.run):
        return progress
    run = progress["run"] or event.run
    if event.run != run:  # another engine's live run of the same meeting: the first one is enriched
        return {**progress, "activity_ms": max(progress["activity_ms"], at_ms)}
    out = {**progress, "run": run, "activity_ms": max(progress["activity_ms"], at_ms)}
    if isinstance(event, MeetingWatermarkV1):
        out["placed"] = max(progress["placed"], event.final_dialogues)
        out["stopped"] = event.watermark_ms >= ALL_STOPPED_MS
    return out


def note_request(progress: Progress, request: EnrichmentRequestedV1, at_ms: int) -> Progress:
    """A request, kept until served; the same request delivered twice is kept once."""
    if any(p["request_id"] == request.event_id for p in progress["pending"]):
        return progress
    entry = {"request_id": request.event_id, "trigger": request.reason, "backend": request.backend, "since_ms": at_ms,
             "dialogue_id": request.dialogue_id, "run": request.run}  # fmt: skip
    return {**progress, "pending": [*progress["pending"], entry]}


def due(meeting_id: str, progress: Progress, now_ms: int, policy: Policy, running: set[str]) -> list[Job]:
    """The jobs to start now; ``running``: the keys of this meeting's jobs still running."""
    run = progress["run"]
    jobs: list[Job] = []
    corrections = [p for p in progress["pending"] if p["trigger"] == "autocorrect"]
    if corrections and run is not None and "autocorrect" not in running:
        entry = corrections[0]
        jobs.append(Job(meeting_id, run, "autocorrect", entry["backend"] or policy.default_backend, progress["placed"],
                        entry["request_id"], entry.get("dialogue_id")))  # fmt: skip
    results = [p for p in progress["pending"] if p["trigger"] != "autocorrect"]
    if "final" not in running:
        final_jobs: list[Job] = []
        for entry in results:
            if entry["trigger"] == "ended" and not (progress["stopped"] or now_ms - entry["since_ms"] >= policy.settle_ms):
                continue
            asked = entry.get("run") or run  # a request naming its run (palaver replay --from dialogues) has it
            if asked is None:
                continue  # nothing said yet: the request waits for the first dialogue (or expires with the topic)
            # Another run's placed dialogues are not counted here: its job enriches what the store has.
            placed = progress["placed"] if asked == run else 0
            final_jobs.append(Job(meeting_id, asked, entry["trigger"], entry["backend"] or policy.default_backend,
                                  placed, entry["request_id"]))  # fmt: skip
            break  # one final job at a time per meeting
        idle = now_ms - progress["activity_ms"] >= policy.idle_ms
        said = progress["placed"] > max(progress["finished"], 0)  # placed dialogues no final result covers
        # A request waiting (an ended meeting whose streams have not stopped yet) is that final result.
        if not final_jobs and not results and run is not None and idle and said:
            final_jobs.append(Job(meeting_id, run, "idle", policy.default_backend, progress["placed"]))
        jobs.extend(final_jobs)
    rolling_due = run is not None and progress["placed"] - progress["rolled"] >= policy.every
    if "rolling" not in running and not any(j.final for j in jobs) and rolling_due:
        jobs.append(Job(meeting_id, run, "rolling", policy.default_backend, progress["placed"]))
    return jobs


def needs_run(progress: Progress) -> bool:
    """A request waits and the live run is not known: no record of the meeting's live run came since its
    progress began (a meeting nobody has spoken in yet, or one whose progress expired). The run is the
    one of the meeting's placed dialogues, if the store has any."""
    return progress["run"] is None and bool(progress["pending"])


def note_run(progress: Progress, run: str) -> Progress:
    """The meeting's live run, as the store knows it, for progress that has none (else unchanged)."""
    if progress["run"] is not None or is_replay(run):
        return progress
    return {**progress, "run": run}


def expired(progress: Progress, now_ms: int, retention_ms: int) -> bool:
    """Whether the meeting's progress may be forgotten at ``now_ms``: nothing is owed (no request waits,
    however old; every placed dialogue is covered by a delivered final result, or none was placed) and the
    meeting has had no record on the dialogues topic for ``retention_ms``."""
    if progress["pending"]:
        return False
    owed = progress["placed"] > max(progress["finished"], 0)
    return not owed and now_ms - progress["activity_ms"] >= retention_ms


def started(progress: Progress, job: Job) -> Progress:
    """A rolling job started: the next one is due ``every`` dialogues later, whatever this one does."""
    if job.final:
        return progress
    return {**progress, "rolled": job.placed}


def finished(progress: Progress, job: Job, covered: int) -> Progress:
    """A job delivered what it made: its request is served; a final result of the meeting's live run covered
    ``covered`` placed dialogues."""
    if job.request_id is None and not job.final:
        return progress
    out = {**progress, "pending": [p for p in progress["pending"] if p["request_id"] != job.request_id]}
    if job.final and job.run == progress["run"]:  # another run's result (a replay's) covers none of the live run
        out["finished"] = max(progress["finished"], covered)
        out["rolled"] = max(progress["rolled"], covered)
    return out
