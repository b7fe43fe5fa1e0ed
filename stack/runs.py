"""``palaver runs list|compare`` and ``palaver replay``'s command-line side: what they print, and their
exit statuses. The work is the kernel's (``palaver.store.runs``, ``palaver.run_compare``) and the STT
service's (``stt_workers.replay``)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from palaver import ids
from palaver.progress import Progress
from palaver.run_compare import (
    Comparison,
    ReferenceScore,
    compare_runs,
    parse_reference,
    score_against_reference,
)
from palaver.settings import Settings
from palaver.store import Store, StoreUnavailable, open_store
from palaver.store.runs import RunSummary, final_turns, meeting_runs, usernames

NOTHING_TO_DO_EXIT = 1  # runs: no run, or no such run; replay: refused (erased, expired, no audio)
USAGE_EXIT = 2
INTERRUPTED_EXIT = 130
LATENCY_NOTE = ("latency: not in the store, which keeps each utterance's media time and when it was stored, not "
                "when its audio arrived (the STT workers' palaver_stt_final_latency_seconds and `palaver bench stt` "
                "measure it)")  # fmt: skip


class RunsError(Exception):
    """What to tell the operator (``palaver: <message>``), with the exit status."""

    def __init__(self, message: str, exit_code: int = USAGE_EXIT, nothing_there: bool = False):
        super().__init__(message)
        self.exit_code = exit_code
        self.nothing_there = nothing_there  # refused as there is nothing to replay (erased, no audio, no run)


def clock(ms: int | None) -> str:
    """Media time as ``m:ss.s`` (``h:mm:ss.s`` past an hour)."""
    if ms is None:
        return "-"
    seconds, tenths = divmod(max(0, ms) // 100, 10)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}.{tenths}" if hours else f"{minutes}:{seconds:02d}.{tenths}"


def pace(summary: RunSummary) -> str:
    return "-" if summary.pace is None else f"{summary.pace:.1f}x"


def runs_table(meeting_id: str, runs: Sequence[RunSummary]) -> str:
    """``palaver runs list``: one line per run."""
    header = ("RUN", "KIND", "FINAL", "LIVE", "UTTERANCES", "WORDS", "SPEAKERS", "MEDIA", "PACE")
    rows = [header] + [
        (r.run, "replay" if r.replay else "live", str(r.final_dialogues), str(r.live_dialogues), str(r.utterances),
         str(r.words), str(r.speakers), f"{clock(r.media_start_ms)}-{clock(r.media_end_ms)}", pace(r))
        for r in runs
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]  # fmt: skip
    return f"meeting {meeting_id}: {len(runs)} run(s)\n" + "\n".join(line.rstrip() for line in lines)


def _who(speaker_id: str, names: Mapping[str, str]) -> str:
    return f"{names[speaker_id]} ({speaker_id})" if speaker_id in names else speaker_id


def _rate(wer: float) -> str:
    return f"{100 * wer:.1f}%"


def comparison_text(meeting_id: str, comparison: Comparison, runs: Mapping[str, RunSummary], names: Mapping[str, str],
                    reference: Sequence[ReferenceScore] = (), reference_name: str = "") -> str:  # fmt: skip
    """``palaver runs compare``: B against A, per speaker, the words that differ, pace, and the reference."""
    c = comparison
    out = [f"meeting {meeting_id}: run B {c.b} against run A {c.a}",
           f"WER {_rate(c.wer)} ({c.words_a} words in A, {c.words_b} in B)"]  # fmt: skip
    for s in c.speakers:
        out.append(f"  {_who(s.speaker_id, names)}: WER {_rate(s.wer)} ({s.words_a} words in A, {s.words_b} in B; "
                   f"{s.substitutions} substituted, {s.deletions} deleted, {s.insertions} inserted)")  # fmt: skip
    if c.differences:
        out.append(f"words that differ ({len(c.differences)}; [-A's-] {{+B's+}}):")
        for d in c.differences:
            change = (f"[-{d.a}-]" if d.a else "") + (f"{{+{d.b}+}}" if d.b else "")
            context = " ".join(part for part in (d.before, change, d.after) if part)
            out.append(f"  {clock(d.at_ms):>8}  {names.get(d.speaker_id, d.speaker_id)}: ...{context}...")
    else:
        out.append("no words differ")
    out.append(LATENCY_NOTE)
    paces = ", ".join(f"{label} {pace(runs[run])}" for label, run in (("A", c.a), ("B", c.b)))
    out.append(f"pace (media time over the time its utterances took to reach the store): {paces}")
    for score in reference:
        label = "A" if score.run == c.a else "B"
        out.append(f"against the reference {reference_name}: {label} {score.run} WER {_rate(score.wer)}")
        for speaker, rate in (score.by_speaker or {}).items():
            out.append(f"  {_who(speaker, names)}: WER {_rate(rate)}")
    return "\n".join(out)


def _store(settings: Settings, meeting_id: str) -> Store:
    if not ids.is_valid_id_part(meeting_id):
        raise RunsError(f"{meeting_id!r} is not a meeting id (1-64 of [A-Za-z0-9._-])")
    try:
        return open_store(settings, migrate=False)
    except StoreUnavailable as exc:
        raise RunsError(f"{exc}; with the embedded ClickHouse, stop Palaver first, or use "
                        f"GET /v1/meetings/{meeting_id}/runs[/compare]") from None  # fmt: skip


async def list_text(store: Store, meeting_id: str) -> str:
    """What ``palaver runs list`` prints; RunsError (exit 1) when the meeting has no run."""
    runs = await meeting_runs(store, meeting_id)
    if not runs:
        raise RunsError(f"meeting {meeting_id} has no runs (no dialogues stored)", NOTHING_TO_DO_EXIT)
    return runs_table(meeting_id, runs)


async def compare_text(store: Store, meeting_id: str, chosen: Sequence[str], reference: Path | None = None) -> str:
    """What ``palaver runs compare`` prints for runs ``chosen`` (none: the first live run and the newest
    other run). RunsError (exit 1) for a meeting with fewer than two runs or a run it does not have."""
    runs = {r.run: r for r in await meeting_runs(store, meeting_id)}
    if len(chosen) == 2:
        a, b = chosen
    elif len(runs) >= 2:
        order = list(runs)
        a, b = order[0], order[-1]
    else:
        raise RunsError(f"meeting {meeting_id} has {len(runs)} run(s): nothing to compare (`palaver replay` makes "
                        "another)", NOTHING_TO_DO_EXIT)  # fmt: skip
    missing = [run for run in (a, b) if run not in runs]
    if missing:
        known = ", ".join(runs) or "none"
        raise RunsError(f"meeting {meeting_id} has no run {missing[0]!r} (its runs: {known})", NOTHING_TO_DO_EXIT)
    turns = {run: await final_turns(store, meeting_id, run) for run in (a, b)}
    comparison = await asyncio.to_thread(compare_runs, a, turns[a], b, turns[b])
    speakers = sorted({t.speaker_id for ts in turns.values() for t in ts})
    names = await usernames(store, speakers)
    scores: list[ReferenceScore] = []
    if reference is not None:
        try:
            text = reference.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise RunsError(f"--reference {reference}: {exc}") from None
        parsed = parse_reference(text, {**{s: s for s in speakers}, **{n: s for s, n in names.items()}})
        scores = [score_against_reference(parsed, run, turns[run]) for run in (a, b)]
    return comparison_text(meeting_id, comparison, runs, names, scores, str(reference or ""))


def runs_command(settings: Settings, action: str, meeting_id: str, chosen: Sequence[str], reference: str | None) -> int:
    if action == "compare" and len(chosen) not in (0, 2):
        raise RunsError("compare takes two runs (RUN_A RUN_B) or none (the first live run and the newest other)")
    store = _store(settings, meeting_id)
    try:
        if action == "list":
            print(asyncio.run(list_text(store, meeting_id)))
        else:
            print(asyncio.run(compare_text(store, meeting_id, chosen, Path(reference) if reference else None)))
    except StoreUnavailable as exc:
        raise RunsError(str(exc)) from None
    finally:
        store.close()
    return 0


def replay_command(settings: Settings, meeting_id: str, engine: str | None, model: str | None, sets: Sequence[str],
                   threads: int | None, lanes: int | None, nice: int, quiet: bool) -> int:  # fmt: skip
    """``palaver replay``: check, scan, transcribe; prints the outcome. Raises RunsError (exit 1 refused,
    exit 2 bad input or no broker)."""
    from aiokafka.errors import KafkaError

    from palaver.streams.clients import wait_for_broker
    from stack.services import check_engine
    from stt_workers.replay import NothingToReplay, ReplayRefused, find_audio, transcribe
    from stt_workers.replay_settings import ReplaySettingsError, parse_sets, replay_setup, run_of
    from stt_workers.whisper_engine import model_label

    if not ids.is_valid_id_part(meeting_id):
        raise RunsError(f"{meeting_id!r} is not a meeting id (1-64 of [A-Za-z0-9._-])")
    try:
        setup = replay_setup(settings, parse_sets(sets), engine, model, threads, lanes)
    except ReplaySettingsError as exc:
        raise RunsError(str(exc)) from None
    if nice < 0:
        raise RunsError(f"--nice {nice}: 0 or more (a replay may lower its priority, not raise it)")
    if model is not None and not (Path(model) / "model.bin").is_file():
        raise RunsError(f"--model {model}: not a CTranslate2 Whisper model directory (no model.bin)")
    check_engine(setup.settings, ["stt"])  # a device and compute type that run here (UsageError: exit 2)
    run = run_of(setup, model_label(setup.settings.model_dir))
    quiet = quiet or not sys.stderr.isatty()
    if nice:
        os.nice(nice)  # before the decode threads start: they inherit it

    async def go() -> int:
        try:
            await wait_for_broker(setup.settings, timeout_s=10)
        except TimeoutError as exc:
            raise RunsError(str(exc)) from None
        scanning = Progress("scanning the audio topic", 1, "records", quiet)
        try:
            audio = await find_audio(setup.settings, meeting_id, int(time.time() * 1000),
                                     lambda done, total: _draw(scanning, done, total))  # fmt: skip
        except ReplayRefused as exc:
            raise RunsError(str(exc), NOTHING_TO_DO_EXIT, isinstance(exc, NothingToReplay)) from None
        finally:
            scanning.close()
        print(f"meeting {meeting_id}: {audio.seconds:.1f} s of audio in {len(audio.streams)} stream(s)"
              + (" (live: replayed up to now)" if audio.live else "") + f"; replaying into run {run}", flush=True)  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bar = Progress("transcribing", audio.seconds, "s of audio", quiet)
        try:
            outcome = await transcribe(setup.settings, audio, run, stop,
                                       lambda read, elapsed: bar.update(read, f"{read / max(elapsed, 1e-3):.1f}x real time"))  # fmt: skip
        finally:
            bar.close()
        speed = outcome.audio_s / max(outcome.elapsed_s, 1e-3)
        if outcome.interrupted:
            print(f"interrupted: run {run} holds what was published; replay again to complete it (the same events "
                  "again change nothing)", file=sys.stderr)  # fmt: skip
            return INTERRUPTED_EXIT
        print(f"replayed {outcome.audio_s:.1f} s of audio in {outcome.elapsed_s:.1f} s ({speed:.1f}x real time) into "
              f"run {run}. The merger builds its dialogues; then: palaver runs compare --meeting {meeting_id}")  # fmt: skip
        if outcome.live:
            print("the meeting is live: utterances not finished yet wait for a later replay", flush=True)
        return 0

    try:
        return asyncio.run(go())
    except KafkaError as exc:  # the broker went away mid-way: what was published stays, a replay again completes it
        raise RunsError(f"the broker failed: {exc}; replay again to complete run {run}") from None


def _draw(bar: Progress, done: int, total: int) -> None:
    bar.total = max(total, 1)
    bar.update(done)


def merge_command(settings: Settings, meeting_id: str, wanted_run: str | None, sets: Sequence[str], nice: int,
                  quiet: bool) -> int:  # fmt: skip
    """``palaver replay --from transcripts``: check, merge again, publish; prints the outcome. Raises RunsError
    (exit 1 refused: erased, no transcript events of the run; exit 2 bad input or no broker)."""
    from aiokafka.errors import KafkaError

    from merger.replay import MergeReplayError, NoRuns, merge_again, merge_overrides
    from palaver.runs import merge_run
    from palaver.streams.clients import wait_for_broker
    from stt_workers.replay import meeting_state
    from stt_workers.replay_settings import ReplaySettingsError, parse_sets

    if not ids.is_valid_id_part(meeting_id):
        raise RunsError(f"{meeting_id!r} is not a meeting id (1-64 of [A-Za-z0-9._-])")
    try:
        merging, overrides = merge_overrides(settings, parse_sets(sets))
    except (ReplaySettingsError, MergeReplayError) as exc:
        raise RunsError(str(exc)) from None
    if nice < 0:
        raise RunsError(f"--nice {nice}: 0 or more (a replay may lower its priority, not raise it)")
    quiet = quiet or not sys.stderr.isatty()
    if nice:
        os.nice(nice)

    async def go() -> int:
        try:
            await wait_for_broker(merging, timeout_s=10)
        except TimeoutError as exc:
            raise RunsError(str(exc)) from None
        state = await meeting_state(merging, meeting_id)
        if state is not None and state.deleted:
            raise RunsError(f"meeting {meeting_id} was erased: it is never replayed", NOTHING_TO_DO_EXIT, True)
        reading = Progress("reading the transcripts topic", 1, "records", quiet)
        try:
            outcome = await merge_again(merging, meeting_id, wanted_run, lambda source: merge_run(source, overrides),
                                        lambda done, total: _draw(reading, done, total))  # fmt: skip
        except MergeReplayError as exc:
            raise RunsError(f"meeting {meeting_id}: {exc}", NOTHING_TO_DO_EXIT, isinstance(exc, NoRuns)) from None
        finally:
            reading.close()
        o = outcome
        skipped = f"; {o.undecodable} record(s) that do not decode passed over" if o.undecodable else ""
        done = (f"published {o.published} event(s)" if o.published else
                "published nothing: the dialogues topic holds the run already")  # fmt: skip
        print(f"meeting {meeting_id}: merged {o.events} transcript event(s) of run {o.source_run} again into run "
              f"{o.run}: {o.dialogues} dialogue(s), {o.final} final; {done}{skipped} ({o.elapsed_s:.1f} s). "
              f"Then: palaver runs compare --meeting {meeting_id} {o.source_run} {o.run}")  # fmt: skip
        return 0

    try:
        return asyncio.run(go())
    except KafkaError as exc:
        raise RunsError(f"the broker failed: {exc}; replay again to complete the run") from None


def enrich_again_command(settings: Settings, meeting_id: str, wanted_run: str | None, sets: Sequence[str]) -> int:
    """``palaver replay --from dialogues``: ask the enrichment service to enrich one run again (unless a final
    result of that enrichment run covers its placed dialogues already); prints what it did. Raises
    RunsError (exit 1 refused: erased, no such run, nothing placed; exit 2 bad input or no broker)."""
    from aiokafka.errors import KafkaError

    from enrichment.insights import enrichment_run
    from enrichment.replay import (
        EnrichReplayError,
        dialogue_runs,
        enriched_already,
        placed_dialogues,
        replay_backend,
        replay_request,
    )
    from merger.replay import MergeReplayError, NoRuns, read_partition, source_run
    from palaver.events import encode
    from palaver.events.registry import DIALOGUES, ENRICHMENT_REQUESTS, INSIGHTS, topic_name
    from palaver.streams.clients import make_producer, wait_for_broker
    from stt_workers.replay import meeting_state
    from stt_workers.replay_settings import ReplaySettingsError, parse_sets

    if not ids.is_valid_id_part(meeting_id):
        raise RunsError(f"{meeting_id!r} is not a meeting id (1-64 of [A-Za-z0-9._-])")
    try:
        backend = replay_backend(settings, parse_sets(sets))
    except (ReplaySettingsError, EnrichReplayError) as exc:
        raise RunsError(str(exc)) from None

    async def go() -> int:
        try:
            await wait_for_broker(settings, timeout_s=10)
        except TimeoutError as exc:
            raise RunsError(str(exc)) from None
        state = await meeting_state(settings, meeting_id)
        if state is not None and state.deleted:
            raise RunsError(f"meeting {meeting_id} was erased: it is never replayed", NOTHING_TO_DO_EXIT, True)
        dialogues, _ = await read_partition(settings, DIALOGUES, meeting_id)
        try:
            run = source_run(dialogue_runs(dialogues), wanted_run, "dialogue", "dialogues")
        except MergeReplayError as exc:
            raise RunsError(f"meeting {meeting_id}: {exc}", NOTHING_TO_DO_EXIT, isinstance(exc, NoRuns)) from None
        placed = placed_dialogues(dialogues, run)
        if not placed:
            raise RunsError(f"meeting {meeting_id}: run {run} has no placed dialogue yet: nothing to enrich",
                            NOTHING_TO_DO_EXIT, True)  # fmt: skip
        target = enrichment_run(run, backend)
        insights, _ = await read_partition(settings, INSIGHTS, meeting_id)
        if enriched_already(insights, target, placed):
            print(f"meeting {meeting_id}: enrichment run {target} covers the {placed} placed dialogue(s) of run "
                  f"{run} already: asked nothing")  # fmt: skip
            return 0
        request = replay_request(meeting_id, run, backend, placed, int(time.time() * 1000))
        producer = make_producer(settings)
        await producer.start()
        try:
            topic = topic_name(settings.topic_namespace, ENRICHMENT_REQUESTS.name)
            await producer.send_and_wait(topic, encode(request), key=meeting_id.encode())
        finally:
            await producer.stop()
        print(f"meeting {meeting_id}: asked the enrichment service to enrich the {placed} placed dialogue(s) of "
              f"run {run} with {backend}, into enrichment run {target}. Then: GET /v1/meetings/{meeting_id}/"
              f"insights?run={target}")  # fmt: skip
        return 0

    try:
        return asyncio.run(go())
    except KafkaError as exc:
        raise RunsError(f"the broker failed: {exc}; replay again") from None


def backfill_command(settings: Settings, since: str, replay_one: Callable[[str], int], nice: int, quiet: bool) -> int:
    """``palaver replay --since DATE``: every meeting created since DATE (``palaver.backfill``), oldest
    first, each through ``replay_one`` (the single-meeting replay of the chosen source, at no further nice).
    A meeting it refuses does not stop the others; bad input or a broker that fails stops them all (exit
    2). Prints a line per meeting on stderr (unless ``quiet``) and the summary; returns the exit status."""
    from palaver.backfill import (
        MeetingResult,
        SinceError,
        exit_status,
        meetings_since,
        parse_since,
        progress_line,
        summary,
    )
    from palaver.streams.clients import wait_for_broker

    try:
        since_ms = parse_since(since)
    except SinceError as exc:
        raise RunsError(str(exc)) from None
    if nice < 0:
        raise RunsError(f"--nice {nice}: 0 or more (a replay may lower its priority, not raise it)")

    async def listed() -> list[str]:
        try:
            await wait_for_broker(settings, timeout_s=10)
        except TimeoutError as exc:
            raise RunsError(str(exc)) from None
        return [m.meeting_id for m in await meetings_since(settings, since_ms)]

    meeting_ids = asyncio.run(listed())
    if not meeting_ids:
        print(f"backfill: no meeting was created since {since} (the meetings topic holds none)")
        return NOTHING_TO_DO_EXIT
    if nice:
        os.nice(nice)  # once, for the whole backfill: its decode threads inherit it
    results: list[MeetingResult] = []
    started = time.monotonic()
    for index, meeting_id in enumerate(meeting_ids):
        if not quiet:
            print(progress_line(index, len(meeting_ids), meeting_id, time.monotonic() - started), file=sys.stderr,
                  flush=True)  # fmt: skip
        try:
            code = replay_one(meeting_id)
        except RunsError as exc:
            if exc.exit_code == USAGE_EXIT:  # bad input or the broker: the same for every meeting
                raise
            results.append(MeetingResult(meeting_id, "skipped" if exc.nothing_there else "refused", str(exc)))
            print(f"palaver: {exc}", file=sys.stderr, flush=True)
            continue
        results.append(MeetingResult(meeting_id, "interrupted" if code == INTERRUPTED_EXIT else "replayed"))
        if code == INTERRUPTED_EXIT:
            break
    print(summary(results), flush=True)
    return exit_status(results)
