"""When enrichment runs: the pure bookkeeping of enrichment/progress.py."""

from __future__ import annotations

from enrichment.progress import (
    ALL_STOPPED_MS,
    Job,
    Policy,
    due,
    expired,
    finished,
    needs_run,
    new_progress,
    note_dialogues,
    note_request,
    note_run,
    started,
)
from palaver.events.insights_v1 import EnrichmentRequestedV1
from palaver.events.meeting_watermark_v1 import MeetingWatermarkV1

RUN = "whisper:tiny.en"
POLICY = Policy(every=3, idle_ms=120_000, settle_ms=30_000, default_backend="local")


def _watermark(placed: int, watermark_ms: int = 5000, run: str = RUN) -> MeetingWatermarkV1:
    return MeetingWatermarkV1(event_id=f"evt_{placed}_{watermark_ms}", meeting_id="m", run=run,
                              watermark_ms=watermark_ms, final_dialogues=placed)  # fmt: skip


def _request(reason: str = "ended", backend: str | None = None, at: int = 1) -> EnrichmentRequestedV1:
    return EnrichmentRequestedV1(event_id=f"evt_req_{reason}_{at}", meeting_id="m", reason=reason,  # type: ignore[arg-type]
                                 backend=backend, requested_by="usr_a", requested_at_ms=at)  # fmt: skip


def _meeting(placed: int, at_ms: int, stopped: bool = False) -> dict:
    return note_dialogues(new_progress(), _watermark(placed, ALL_STOPPED_MS if stopped else 5000), at_ms)


def test_a_rolling_result_every_few_placed_dialogues_one_at_a_time() -> None:
    progress = _meeting(placed=2, at_ms=1000)
    assert due("m", progress, 2000, POLICY, set()) == []
    progress = note_dialogues(progress, _watermark(3), 1500)
    [job] = due("m", progress, 2000, POLICY, set())
    assert (job.trigger, job.backend, job.placed, job.final) == ("rolling", "local", 3, False)
    assert due("m", progress, 2000, POLICY, {"rolling"}) == []  # one at a time
    progress = started(progress, job)
    assert due("m", progress, 2000, POLICY, set()) == []  # the next one is due 3 dialogues later
    progress = note_dialogues(progress, _watermark(6), 1600)
    assert [j.placed for j in due("m", progress, 2000, POLICY, set())] == [6]


def test_an_idle_meeting_gets_its_final_result_once() -> None:
    progress = _meeting(placed=2, at_ms=10_000)
    assert due("m", progress, 10_000 + 119_999, POLICY, set()) == []
    [job] = due("m", progress, 10_000 + 120_000, POLICY, set())
    assert (job.trigger, job.final, job.placed) == ("idle", True, 2)
    assert due("m", progress, 10_000 + 120_000, POLICY, {"final"}) == []  # already running
    progress = finished(progress, job, covered=2)
    assert due("m", progress, 10_000 + 500_000, POLICY, set()) == []  # done: nothing new since
    # The meeting goes on: new dialogues make it due again once it is idle again.
    progress = note_dialogues(progress, _watermark(3), 700_000)
    assert due("m", progress, 700_000 + 120_000, POLICY, set())[0].trigger == "idle"


def test_an_ended_meeting_waits_for_its_streams_to_stop_or_the_settle_time() -> None:
    progress = note_request(_meeting(placed=4, at_ms=1000), _request("ended"), at_ms=2000)
    assert [j.trigger for j in due("m", progress, 2000 + 29_999, POLICY, {"rolling"})] == []
    [job] = due("m", progress, 2000 + 30_000, POLICY, {"rolling"})
    assert (job.trigger, job.request_id) == ("ended", "evt_req_ended_1")
    stopped = note_dialogues(progress, _watermark(4, ALL_STOPPED_MS), 2500)
    assert [j.trigger for j in due("m", stopped, 2600, POLICY, set())] == ["ended"]
    served = finished(stopped, job, covered=4)
    assert served["pending"] == [] and served["finished"] == 4
    assert due("m", served, 2600, POLICY, set()) == []


def test_a_request_is_served_at_once_with_its_backend_and_kept_until_then() -> None:
    progress = _meeting(placed=1, at_ms=1000)
    progress = note_request(progress, _request("requested", backend="openai", at=5), at_ms=1100)
    assert note_request(progress, _request("requested", backend="openai", at=5), at_ms=1200) is progress
    [job] = due("m", progress, 1200, POLICY, set())
    assert (job.trigger, job.backend, job.final) == ("requested", "openai", True)
    assert finished(progress, Job("m", RUN, "rolling", "local", 1), 1) is progress  # a rolling job serves no request
    assert finished(progress, job, 1)["pending"] == []


def test_a_request_before_any_dialogue_waits_for_one() -> None:
    progress = note_request(new_progress(), _request("requested"), at_ms=10)
    assert due("m", progress, 10**9, POLICY, set()) == []
    progress = note_dialogues(progress, _watermark(0), 20)
    assert [j.trigger for j in due("m", progress, 30, POLICY, set())] == ["requested"]


def test_replay_runs_are_not_the_meetings_activity_and_the_first_live_run_is_enriched() -> None:
    progress = _meeting(placed=2, at_ms=1000)
    assert note_dialogues(progress, _watermark(9, run=f"{RUN}~replay"), 9000) is progress
    other = note_dialogues(progress, _watermark(9, run="deepgram:nova-3"), 9000)
    assert (other["run"], other["placed"], other["activity_ms"]) == (RUN, 2, 9000)


def test_a_silent_meeting_is_not_enriched_on_idle() -> None:
    progress = _meeting(placed=0, at_ms=1000)
    assert due("m", progress, 10**9, POLICY, set()) == []


def test_an_ended_meeting_waiting_for_its_streams_is_not_also_enriched_on_idle() -> None:
    progress = note_request(_meeting(placed=4, at_ms=1000), _request("ended"), at_ms=2000)
    assert due("m", progress, 2000 + 29_999 + 120_000, POLICY, set())[0].trigger == "ended"  # settle time passed
    policy = Policy(every=3, idle_ms=1000, settle_ms=60_000, default_backend="local")
    assert [j for j in due("m", progress, 5000, policy, set()) if j.final] == []  # idle: the ended request is the final


def test_an_autocorrect_request_runs_at_once_beside_results_and_changes_no_result_bookkeeping() -> None:
    request = EnrichmentRequestedV1(event_id="evt_fix", meeting_id="m", reason="autocorrect", dialogue_id="dlg_1",
                                    requested_by="usr_a", requested_at_ms=1)  # fmt: skip
    progress = note_request(_meeting(placed=3, at_ms=1000), request, at_ms=1100)
    jobs = due("m", progress, 1200, POLICY, set())
    assert [(j.trigger, j.final, j.key) for j in jobs] == [("autocorrect", False, "autocorrect"), ("rolling", False, "rolling")]
    assert jobs[0].dialogue_id == "dlg_1"
    assert [j.trigger for j in due("m", progress, 1200, POLICY, {"autocorrect", "rolling"})] == []
    done = finished(progress, jobs[0], covered=3)
    assert done["pending"] == [] and (done["finished"], done["rolled"]) == (progress["finished"], progress["rolled"])


WEEK_MS = 7 * 24 * 3600 * 1000


def test_progress_expires_once_its_final_result_is_delivered_and_it_was_idle_past_the_retention() -> None:
    progress = _meeting(placed=4, at_ms=1000)
    assert not expired(progress, 1000 + 10 * WEEK_MS, WEEK_MS)  # its final result is owed
    [job] = due("m", progress, 1000 + 120_000, POLICY, set())
    done = finished(progress, job, covered=4)
    assert not expired(done, 1000 + WEEK_MS - 1, WEEK_MS)
    assert expired(done, 1000 + WEEK_MS, WEEK_MS)
    later = note_dialogues(done, _watermark(5), 1000 + WEEK_MS - 1)  # the meeting went on: owed again
    assert not expired(later, 1000 + 10 * WEEK_MS, WEEK_MS)
    assert expired(_meeting(placed=0, at_ms=1000), 1000 + WEEK_MS, WEEK_MS)  # nothing was said: nothing owed


def test_a_pending_request_is_never_dropped_however_old() -> None:
    progress = _meeting(placed=2, at_ms=1000)
    done = finished(progress, due("m", progress, 200_000, POLICY, set())[0], covered=2)
    assert expired(done, 100 * WEEK_MS, WEEK_MS)
    for reason in ("autocorrect", "requested", "ended"):
        waiting = note_request(done, _request(reason, at=7), at_ms=2000)
        assert not expired(waiting, 100 * WEEK_MS, WEEK_MS)
    unspoken = note_request(new_progress(), _request("ended"), at_ms=10)  # waits for a first dialogue
    assert not expired(unspoken, 100 * WEEK_MS, WEEK_MS)


def test_a_request_after_the_progress_expired_waits_for_the_run_then_is_served() -> None:
    fresh = note_request(new_progress(), _request("autocorrect", at=9), at_ms=10 * WEEK_MS)
    assert needs_run(fresh) and due("m", fresh, 10 * WEEK_MS, POLICY, set()) == []
    assert not needs_run(new_progress()) and not needs_run(_meeting(placed=1, at_ms=1))
    assert note_run(fresh, f"{RUN}~replay") is fresh  # a replay is not the meeting's run
    known = note_run(fresh, RUN)
    assert note_run(known, "deepgram:nova-3") is known
    [job] = due("m", known, 10 * WEEK_MS, POLICY, set())
    assert (job.trigger, job.run, job.request_id) == ("autocorrect", RUN, "evt_req_autocorrect_9")
    served = finished(known, job, covered=0)
    assert expired(served, 10 * WEEK_MS, WEEK_MS)  # served, nothing owed, idle since long before


def test_a_dialogue_of_an_expired_meeting_starts_fresh_progress() -> None:
    progress = note_dialogues(new_progress(), _watermark(7), 5 * WEEK_MS)
    assert (progress["run"], progress["placed"], progress["finished"], progress["activity_ms"]) == (RUN, 7, -1, 5 * WEEK_MS)
    assert due("m", progress, 5 * WEEK_MS + 120_000, POLICY, {"rolling"})[0].trigger == "idle"


def test_a_request_naming_a_replay_run_enriches_that_run_and_leaves_the_live_runs_bookkeeping() -> None:
    replay = f"{RUN}~merge"
    asked = EnrichmentRequestedV1(event_id="evt_req_replay", meeting_id="m", reason="requested", backend="local",
                                  run=replay, requested_by="usr_a", requested_at_ms=1)  # fmt: skip
    silent = note_request(new_progress(), asked, at_ms=10)
    [job] = due("m", silent, 20, POLICY, set())  # no live run known: the named run needs none
    assert (job.run, job.trigger, job.backend, job.placed, job.final) == (replay, "requested", "local", 0, True)
    progress = note_request(_meeting(placed=4, at_ms=1000), asked, at_ms=1100)
    [job] = due("m", progress, 1200, POLICY, set())
    assert (job.run, job.placed) == (replay, 0), "the live run's placed count is not the replay's"
    served = finished(progress, job, covered=7)
    assert served["pending"] == [] and served["finished"] == progress["finished"] == -1
    assert [j.trigger for j in due("m", served, 1000 + 120_000, POLICY, set())] == ["idle"], "the live run is still owed"
