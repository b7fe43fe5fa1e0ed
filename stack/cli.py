"""The ``palaver`` command. The entrypoint is the one place that reads the environment (into Settings)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from palaver import __version__
from palaver.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir).expanduser().resolve()
    if getattr(args, "port", None):
        overrides["api_port"] = args.port
    for option, setting in (("tls_cert", "tls_cert_file"), ("tls_key", "tls_key_file"), ("ca_file", "tls_ca_file")):
        if getattr(args, option, None):
            overrides[setting] = Path(getattr(args, option)).expanduser().resolve()
    return Settings(**overrides)  # type: ignore[arg-type]


def _checked_settings(args: argparse.Namespace) -> Settings:
    """The settings, or a UsageError naming each bad one as its environment variable (no traceback)."""
    from pydantic import ValidationError

    from stack.services import UsageError

    try:
        return _settings(args)
    except ValidationError as exc:
        bad = "; ".join(f"PALAVER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"bad setting: {bad}") from None


def _default(setting: str) -> object:
    return Settings.model_fields[setting].default


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where broker data, chdb data and logs live (env PALAVER_DATA_DIR; "
                   "default ~/.local/share/palaver)")  # fmt: skip


def _add_tls(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS and WSS with this PEM certificate (chain) "
                   "(env PALAVER_TLS_CERT_FILE); needs --tls-key. Adds Strict-Transport-Security to responses")  # fmt: skip
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM private key (env PALAVER_TLS_KEY_FILE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="palaver",
        description="Palaver: live meeting transcription (ingest -> Kafka -> STT -> merger -> ClickHouse -> API).",
        epilog="Settings come from PALAVER_* environment variables; see README.md.",
    )
    parser.add_argument("--version", action="version", version=f"palaver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start the broker and every stage, supervised; serve the API; Ctrl-C stops it all",
                        description="Start the embedded broker (unless PALAVER_KAFKA_BOOTSTRAP is set) and every "
                        "stage, serve http://127.0.0.1:PORT, restart a stage (or the broker it started) that dies, "
                        "and stop everything on Ctrl-C or SIGTERM. A process that dies PALAVER_RESTART_LIMIT times "
                        f"({_default('restart_limit')}) within PALAVER_RESTART_WINDOW_S ({_default('restart_window_s'):g} s) "
                        "stops everything, with its log's last lines. "
                        "Logs: DATA_DIR/logs/{web,stt,merger}.log. Prometheus /metrics: stt on PORT+1, merger on "
                        "PORT+2, the supervisor (palaver_supervisor_restarts_total) on PORT+3 "
                        "(PALAVER_METRICS_ACCESS=local: on 127.0.0.1 only; off: not served). With --tls-cert and "
                        "--tls-key it serves https:// and wss:// instead.")  # fmt: skip
    up.add_argument("--port", type=int, default=None, help="HTTP port (default 8000, env PALAVER_API_PORT)")
    _add_tls(up)
    _add_data_dir(up)

    demo = sub.add_parser("demo", help="stream a scripted three-speaker meeting and print its transcript",
                          description="Synthesize a short three-speaker meeting (hibari-tts), stream the three "
                          "tracks concurrently through the ingest WebSocket, show dialogues as they finalize, then "
                          "print the merged transcript. Starts Palaver for the duration unless --url answers.")  # fmt: skip
    demo.add_argument("--url", default=None, help="a running Palaver (default: start one on --port)")
    demo.add_argument("--speed", type=float, default=1.0,
                      help="streaming pace, x real time (default 1; a running Palaver may hold it to its "
                      "PALAVER_INGEST_MAX_SPEED, one the demo starts allows it)")
    demo.add_argument("--port", type=int, default=None, help="HTTP port when the demo starts Palaver")
    demo.add_argument("--serve", action="store_true",
                      help="then open the web app: print a demo user's sign-in, the meeting's review page and a new "
                      "meeting room, and keep Palaver running until Ctrl-C (make demo does this)")  # fmt: skip
    demo.add_argument("--ca-file", metavar="FILE", help="also trust this CA bundle (PEM) for an https:// --url, e.g. "
                      "a self-signed certificate (env PALAVER_TLS_CA_FILE; default: the system's CAs only)")  # fmt: skip
    demo.add_argument("--client-log", metavar="FILE", help="append each stream connection's ready, acks and "
                      "close to FILE (JSON lines), for `palaver check --client-log FILE`")  # fmt: skip
    _add_data_dir(demo)

    broker = sub.add_parser("broker", help="manage the embedded Kafka broker",
                            description="Manage the embedded single-node Kafka (KRaft) broker on 127.0.0.1.")  # fmt: skip
    broker_sub = broker.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("start", "start it (formats storage on first start) and wait until it answers"),
                       ("stop", "stop it"), ("status", "say whether it runs, where, and where its log is"),
                       ("fetch", "fetch the broker jars from Maven Central into the cache")):  # fmt: skip
        p = broker_sub.add_parser(name, help=text, description=text)
        _add_data_dir(p)

    run = sub.add_parser("run", help="run one or more services in this process",
                         description="Run services in this process: any of ingest, api, store, stt, merger together "
                         "(ingest/api/store share one HTTP server). With chdb, the services that "
                         "touch ClickHouse (api, store) must share one process.")  # fmt: skip
    run.add_argument("services", nargs="+", metavar="SERVICE", help="ingest | api | store | stt | merger")
    run.add_argument("--host", default=None, help="HTTP host (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default 8000)")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="with stt alone: N worker processes in one consumer group; with ingest alone: N ingest "
                     "processes sharing the HTTP port (--reuse-port; they share the meetings' timelines through "
                     "Kafka, so any serves any stream). Supervised as by `palaver up` (a dead one is restarted), "
                     "logging to DATA_DIR/logs/SERVICE-I.log; with PALAVER_METRICS_PORT P, process I serves "
                     "/metrics on P+I and the supervisor on P+N (default 1)")  # fmt: skip
    run.add_argument("--reuse-port", action="store_true",
                     help="bind the HTTP port with SO_REUSEPORT, so several processes share it and the kernel "
                     "spreads connections over them (what --workers does for ingest); /metrics then needs "
                     "PALAVER_METRICS_PORT")  # fmt: skip
    _add_tls(run)
    _add_data_dir(run)

    bench = sub.add_parser("bench", help="run a benchmark (prints figures, writes bench/out/NAME.json and .png)",
                           description="Benchmarks measure performance goals; see bench/README.md.")  # fmt: skip
    bench_sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    bench_sub.add_parser("merger", help="merger throughput and added latency", add_help=False)
    bench_sub.add_parser("triggers", help="enrichment's consumer of the dialogues topic vs a faust agent",
                         add_help=False)  # fmt: skip
    bench_sub.add_parser("stt", help="concurrent speakers within STT lag targets, vs a naive Whisper server",
                         add_help=False)  # fmt: skip
    bench_sub.add_parser("meetings", help="M concurrent meetings x K speakers through the pipeline: partial and "
                         "words-settled lag p50/p95/p99 per meeting and over time, lost audio", add_help=False)  # fmt: skip
    bench_sub.add_parser("decode", help="talking streams one machine's STT holds (CPU or GPU), no broker",
                         add_help=False)  # fmt: skip
    bench_sub.add_parser("browser", help="mic-to-screen latency in chromium, 1 and 3 participants", add_help=False)
    bench_sub.add_parser("ingest", help="frame->ack latency and CPU per 100 ms frame of one ingest process, "
                         "100 and 300 streams; --capacity: streams offered beyond it are refused (1013)",
                         add_help=False)  # fmt: skip
    bench_sub.add_parser("enrichment", help="task precision/recall, assignee and due-date accuracy, summary key "
                         "points, over the scripted meetings", add_help=False)  # fmt: skip

    enrich = sub.add_parser(
        "enrich", help="summary, action items, keywords, mood, agenda and metrics of a transcript file (JSON out)",
        description="Enrich a meeting transcript and print one JSON object: summary {brief, detailed} in "
        "Markdown, action_items [{description, assignee, start_date, due_date, priority, status, "
        "dialogue_ids}], keywords, mood {overall, speakers}, agenda [{title, start_ms, end_ms, agenda_item}] "
        "and metrics (talk time and share per speaker, words per minute, overlap, interruptions, questions, "
        "longest monologue, silence). FILE is the JSON export of a meeting (an object with a 'dialogues' "
        "list of {speaker_name or speaker_id, start_ms, end_ms, text}) or plain text, one 'speaker: text' "
        "line per turn (timings then estimated at 150 words a minute); '-' reads stdin. The output also "
        "says the backend that made it, and fallback: null, or {backend, reason} when a remote backend failed "
        "(after its retries) and the local one made the result instead. The local backend is offline and "
        "deterministic; openai (an OpenAI-compatible endpoint: OpenAI, vLLM, Ollama, llama.cpp) and watsonx "
        "(IBM watsonx.ai) are configured by PALAVER_ENRICHMENT_* settings (README, docs/enrichment.md). "
        "Exit status: 0 printed, 2 bad input or a remote backend's missing setting.")  # fmt: skip
    enrich.add_argument("file", metavar="FILE", help="transcript file (JSON export or 'speaker: text' lines), or -")
    enrich.add_argument("--backend", metavar="NAME", default=None,
                        help="local, openai or watsonx (default PALAVER_ENRICHMENT_BACKEND, else local)")  # fmt: skip
    enrich.add_argument("--meeting-date", metavar="YYYY-MM-DD", default=None,
                        help="what 'by Friday' and 'next Tuesday' resolve against (default: the file's date, "
                        "else today)")  # fmt: skip
    enrich.add_argument("--participants", metavar="A,B,C", default=None,
                        help="comma-separated names tasks may be assigned to (default: the file's, else the "
                        "speakers)")  # fmt: skip

    topics = sub.add_parser("topics", help="list the topic registry, or create the topics",
                            description="Print every registered topic; with --create, create missing ones.")  # fmt: skip
    topics.add_argument("--create", action="store_true", help="create missing topics on the configured broker")
    _add_dlq(sub)
    _add_admin(sub)
    _add_replay(sub)
    _add_check(sub)
    return parser


def _add_check(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    check = sub.add_parser(
        "check", help="whether a meeting went through the pipeline whole: lost or duplicated audio, "
        "utterances, dialogues out of order",
        description="Check one meeting end to end and report in Jepsen's words. It reads the meeting's records "
        "on the audio topic, its finals on the transcripts topic, its utterances and dialogues in ClickHouse "
        "(every run), and the streaming clients' ack logs (--client-log), and reports, each with its ids: "
        "acked audio lost (samples a client was acknowledged that no frame on the audio topic holds), audio "
        "lost (samples inside a connection that its stream.stopped says are durable, missing), audio "
        "duplicated (samples of a stream on the topic twice, unless a resumed connection sent the same frame "
        "again, which the protocol allows and the report notes), utterances lost (a final on the transcripts "
        "topic or in a final dialogue that the store lacks; once every stream stopped and every dialogue of a "
        "run is placed, a final in none of them), utterances duplicated (two utterances of one stream and "
        "run over the same samples, or one in two final dialogues) and dialogues out of order (placed "
        "dialogues whose positions are not 0, 1, 2 ... in start order). Run it once the meeting has "
        "settled. It reads without a consumer group and writes nothing; with the embedded ClickHouse (chdb) "
        "stop Palaver first. Exit status: 0 valid, 1 anomalies found, 2 bad input, no broker or store, or "
        "nothing of the meeting anywhere.")  # fmt: skip
    check.add_argument("--meeting", required=True, metavar="ID", help="the meeting's id (mtg_...)")
    check.add_argument("--client-log", dest="client_logs", action="append", default=[], metavar="FILE",
                       help="an ack log written by `palaver demo --client-log` or `palaver bench ingest "
                       "--client-log` (repeatable); without one, acknowledged audio is not judged")  # fmt: skip
    check.add_argument("--json", action="store_true", help="print the report as one JSON object: meeting_id, "
                       "valid, anomaly_types, anomalies {kind: [{ids, detail}]}, checked, notes")  # fmt: skip
    _add_data_dir(check)


REPLAY_SOURCES = ("audio", "transcripts", "dialogues")


def _add_replay(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    replay = sub.add_parser(
        "replay", help="transcribe a stored meeting's audio (or merge its transcripts) again, into a run of its own",
        description="Read a meeting's audio from the audio topic (kept 7 days, the registry's retention) and "
        "transcribe it again with the STT workers' own code, as fast as the machine allows, into a new run "
        "named by the engine, model and overrides: ENGINE:MODEL~replay, or ENGINE:MODEL~HASH with --set "
        "(HASH: 8 hex digits of the sorted overrides). The running merger builds that run's dialogues and the "
        "store keeps them beside the live run's (read them with ?run=, compare with `palaver runs compare`). "
        "Replaying the same thing again changes nothing (the same events, deduplicated). Live meetings are not "
        "disturbed: the replay decodes in this process, reads without a consumer group, commits nothing, and "
        "its run is never the live socket's or the read routes' default. A live meeting is replayed up to "
        "now. Refused: an erased meeting, and one whose audio has expired, wholly or in part. Exit status: 0 "
        "replayed, 1 refused (erased, expired, no audio), 2 bad input or no broker, 130 interrupted (replay "
        "again to complete the run). With --from transcripts it transcribes nothing: it reads the meeting's "
        "stored transcript events of one run (kept for ever), merges them again in this process with the "
        "merger settings --set gives (merger_pause_ms), and publishes the new run's dialogues (RUN~merge, "
        "RUN~merge-HASH with --set) beside the others; a second identical replay publishes nothing. With --from "
        "dialogues it asks the running enrichment service to enrich one run's placed dialogues (a replay's "
        "too) with --set enrichment_backend=NAME (default PALAVER_ENRICHMENT_BACKEND), into the enrichment "
        "run RUN/BACKEND; it asks nothing when a final result of that run covers them already. With --since "
        "DATE instead of --meeting it backfills: every meeting created since DATE (from the meetings topic), "
        "oldest first, each into the run --meeting would give, with a line per meeting and a summary: "
        "replayed, skipped (erased, nothing to replay) and refused (e.g. audio expired in part), each with "
        "why. A refused meeting does not stop the others; its exit status: 0 when none was refused, 1 when "
        "one was (or no meeting was created since DATE), 2 bad input or no broker, 130 interrupted (the "
        "backfill again completes it).")  # fmt: skip
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--meeting", metavar="ID", help="the meeting's id (mtg_...)")
    which.add_argument("--since", metavar="DATE", help="backfill: every meeting created at or after DATE, an ISO "
                       "date (midnight UTC) or date and time (UTC unless it names a zone), e.g. 2026-12-01 or "
                       "2026-12-01T09:30+01:00")  # fmt: skip
    replay.add_argument("--from", dest="source", choices=REPLAY_SOURCES, default="audio",
                        help="what to replay: audio (transcribe the audio topic again; default); transcripts "
                        "(merge a run's stored transcript events again with other merger settings, into "
                        "RUN~merge or RUN~merge-HASH, without STT); dialogues (ask the enrichment service to "
                        "enrich a run's placed dialogues again, into the enrichment run RUN/BACKEND)")  # fmt: skip
    replay.add_argument("--run", metavar="RUN", help="with --from transcripts or dialogues: the run to replay "
                        "(default the meeting's first live run on that topic)")  # fmt: skip
    replay.add_argument("--engine", metavar="E", help="the STT engine: whisper, the only one a replay takes "
                        "(default PALAVER_STT_ENGINE)")  # fmt: skip
    replay.add_argument("--model", metavar="DIR", help="a CTranslate2 Whisper model directory (default "
                        "PALAVER_WHISPER_MODEL_DIR, else the bundled tiny.en)")  # fmt: skip
    replay.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting that decides the transcript (repeatable): whisper_beam_size, "
                        "whisper_decode, whisper_compute_type, whisper_device, stt_language, vad_threshold, "
                        "vad_min_silence_ms, vad_min_speech_ms, vad_pad_ms, max_utterance_ms; with --from "
                        "transcripts the merger's: merger_pause_ms; with --from dialogues enrichment_backend "
                        "(names as PALAVER_* without the prefix). "
                        "Others are refused, saying why (exit 2)")  # fmt: skip
    replay.add_argument("--threads", type=int, metavar="N", help="CPU threads per decode lane (default "
                        "PALAVER_WHISPER_THREADS, 1); not part of the run")  # fmt: skip
    replay.add_argument("--lanes", type=int, metavar="N", help="decodes at once (default PALAVER_STT_DECODE_LANES, "
                        "2); not part of the run")  # fmt: skip
    replay.add_argument("--nice", type=int, default=10, metavar="N",
                        help="lower this process's CPU priority by N (default 10), so live meetings' workers "
                        "on the same machine come first; 0 leaves it")  # fmt: skip
    replay.add_argument("--quiet", action="store_true", help="no progress bar (none either when stderr is not a "
                        "terminal), and with --since no line per meeting")  # fmt: skip
    _add_data_dir(replay)

    runs = sub.add_parser("runs", help="list a meeting's runs, compare two",
                          description="A run is one machine pass over a meeting's audio: the live one "
                          "(ENGINE:MODEL) and each replay (ENGINE:MODEL~...). These commands read ClickHouse: "
                          "with the embedded one (chdb) stop Palaver first, or use GET /v1/meetings/ID/runs "
                          "and .../runs/compare.")  # fmt: skip
    runs_sub = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    runs_list = runs_sub.add_parser("list", help="one line per run: kind, dialogues, utterances, words, media span, "
                                    "pace", description="One line per run of the meeting: live or replay, final "
                                    "and live dialogues, utterances, words, speakers, its media span, and its pace "
                                    "(media time over the time its utterances took to reach the store). Exit "
                                    "status: 0, 1 no runs, 2 bad input or no store.")  # fmt: skip
    compare = runs_sub.add_parser(
        "compare", help="word error rate of run B against run A, per speaker, and the words that differ",
        description="Score run B's final dialogues against run A's (the machine's text; human edits are no "
        "run's): the word error rate over the meeting and per speaker, the words that differ in media order "
        "([-A's words-] {+B's+}, with context), each run's pace, and with --reference each run against a "
        "reference transcript. Latency is not in the store, and says so. Without RUN_A RUN_B: the first live "
        "run and the newest other run. Exit status: 0, 1 fewer than two runs or no such run, 2 bad input or "
        "no store.")  # fmt: skip
    compare.add_argument("chosen", nargs="*", metavar="RUN", help="RUN_A RUN_B (default: the first live run, the "
                         "newest other run)")  # fmt: skip
    compare.add_argument("--reference", metavar="FILE", help="a reference transcript: `speaker: text` lines "
                         "(speaker: a user id or username of the meeting) scored per speaker, or any text, "
                         "scored against each run's whole text")  # fmt: skip
    for p in (runs_list, compare):
        p.add_argument("--meeting", required=True, metavar="ID", help="the meeting's id (mtg_...)")
        _add_data_dir(p)


def _add_admin(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    admin = sub.add_parser("admin", help="create accounts (the first admin), invite codes, erase meetings",
                           description="Operator commands for accounts and meetings. They talk to Kafka as the "
                           "API does.")  # fmt: skip
    admin_sub = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = admin_sub.add_parser(
        "create-user", help="create an account of any role (asks for the password)",
        description="Create an account of any role, for example the first admin. Asks for the password twice "
        "on the terminal, or reads one line from stdin with --password-stdin. The username and email go "
        "through the same name registry as registrations (it runs in the API processes, so Palaver must be "
        "up). Exit status: 0 created (prints the user id), 1 the username or email is taken, 2 bad input, "
        "no broker, or no answer from the name registry within PALAVER_NAME_CLAIM_TIMEOUT_S.")  # fmt: skip
    create.add_argument("--username", required=True, help="3-64 of [A-Za-z0-9._-]; unique, case-insensitively")
    create.add_argument("--email", required=True, help="unique, case-insensitively")
    create.add_argument("--role", choices=("admin", "member"), default="member", help="default member")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin (for scripts) instead of asking")  # fmt: skip
    _add_data_dir(create)
    invite = admin_sub.add_parser(
        "invite", help="print an invite code for PALAVER_REGISTRATION=invite",
        description="Print a new invite code: with PALAVER_REGISTRATION=invite, POST /v1/users needs one in "
        "its `invite` field. Any number of accounts may use it until it expires. It is signed with the "
        "deployment's secret (PALAVER_SECRET_KEY, else DATA_DIR/secret_key: use the API's data dir).")  # fmt: skip
    invite.add_argument("--ttl-hours", type=float, default=72.0, metavar="N", help="valid for N hours (default 72)")
    _add_data_dir(invite)
    purge = admin_sub.add_parser(
        "purge-meeting", help="erase a meeting from ClickHouse and the compacted topics (asks to confirm)",
        description="Erase a meeting, as DELETE /v1/meetings/ID does: publish its content-free 'deleted' "
        "state (its id stays known as purged), tombstone its member and link keys on the meetings topic and "
        "its key on merger.state, and delete its rows from every ClickHouse table but that marker. Events "
        "on the delete-policy topics (audio.frames until its retention; transcripts, dialogues, edits, chat) "
        "stay: see docs/architecture.md, Erasure. Asks you to type the meeting id again, unless --yes. With "
        "the embedded ClickHouse (chdb) it opens the data directory itself: stop Palaver first, and start the "
        "broker alone (palaver broker start), or use the API route instead. Exit "
        "status: 0 purged (a second purge finishes an interrupted one), 1 not confirmed (nothing deleted), "
        "2 bad input, no terminal to confirm on, no broker or no store, 3 no such meeting.")  # fmt: skip
    purge.add_argument("meeting_id", metavar="ID", help="the meeting's id (mtg_...)")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation (for scripts)")
    _add_data_dir(purge)


DLQ_TOPIC_HELP = "a topic (transcripts) or its dead-letter topic (transcripts.dlq); PALAVER_TOPIC_NAMESPACE applies"


def _add_dlq(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = sub.add_parser("dlq", help="list, show and replay dead letters (bad messages a consumer set aside)",
                         description="A consumer sends a message it cannot process to its topic's dead-letter "
                         "topic (TOPIC.dlq), with dlq.* headers saying where it came from and why. These "
                         "commands read them and, once the bug is fixed, replay them to their source topic.")  # fmt: skip
    dlq_sub = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlq_list = dlq_sub.add_parser("list", help="one line per dead letter",
                                  description="One line per dead letter: its DLQ offset, source "
                                  "topic[partition]@offset, service, error class, when it was dead-lettered, "
                                  "whether it was replayed, and the start of the error message.")  # fmt: skip
    dlq_show = dlq_sub.add_parser("show", help="one dead letter whole: provenance, headers, key, value",
                                  description="One dead letter whole: provenance, error, replay, key, headers, "
                                  "and the value (pretty JSON, else its size and a hex dump).")  # fmt: skip
    dlq_show.add_argument("--offset", type=int, metavar="N", help="its DLQ offset (default: the newest)")
    dlq_replay = dlq_sub.add_parser(
        "replay", help="send dead letters back to their source topic, to be processed again",
        description="Send dead letters back to the partition of their source topic they came from, with the "
        "same key, value and headers (less the dlq.* ones, plus dlq.replayed.from=DLQ@OFFSET), to be processed "
        "again once the bug is fixed. Each replay is remembered in the dlq.replays topic: --all sends only "
        "the dead letters not replayed yet, and --offset refuses one replayed before, unless --force. "
        "(A crash mid-replay may send one twice, as any at-least-once redelivery.)")  # fmt: skip
    which = dlq_replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--offset", type=int, metavar="N", help="the dead letter at this DLQ offset")
    which.add_argument("--all", action="store_true", help="every dead letter not replayed yet")
    dlq_replay.add_argument("--force", action="store_true", help="replay dead letters replayed before, too")
    for p in (dlq_list, dlq_show, dlq_replay):
        p.add_argument("topic", metavar="TOPIC", help=DLQ_TOPIC_HELP)


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = extra  # the benchmark parses its own options (palaver bench merger --help)
    elif extra:
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from palaver import log_redaction

    log_redaction.install()  # tickets, tokens, cookies: never in a log line of any process
    for noisy in ("aiokafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command in ("dlq", "admin", "replay", "runs", "check"):  # a broker that does not answer: one palaver: line
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.command in ("replay", "runs", "check"):  # their own output, and the progress bar, are what they say
        logging.getLogger().setLevel(logging.WARNING)
    if args.command == "admin":
        logging.getLogger().setLevel(logging.WARNING)
    from palaver.broker.embedded import BrokerError
    from palaver.streams.dlq_tools import DlqToolError
    from palaver.streams.kafka_security import KafkaSecurityError
    from stack.admin import AdminError
    from stack.check import CheckError
    from stack.https import TlsSettingsError
    from stack.runs import RunsError
    from stack.services import UsageError
    from stack.supervisor import StackError

    try:
        return _dispatch(args)
    except (AdminError, RunsError) as exc:
        print(f"palaver: {exc}", file=sys.stderr)
        return exc.exit_code
    except (BrokerError, UsageError, DlqToolError, KafkaSecurityError, TlsSettingsError, CheckError) as exc:
        print(f"palaver: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:  # a child that keeps dying, a taken port, no health in time
        print(f"palaver: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    settings = _checked_settings(args)
    if args.command == "up":
        from stack.supervisor import interrupt_on_signals, stop_on_signals
        from stack.up import Stack

        interrupt_on_signals()  # start-up stops what it started and exits (130)
        stack = Stack(settings)
        stack.start()
        stopping = stop_on_signals()
        notes = [f"API docs {stack.url}/docs"] if settings.docs else []
        if stack.metrics_host is not None:
            notes.append(f"supervisor metrics http://{stack.metrics_host}:{stack.metrics_port}/metrics")
        print(f"Palaver is up: {stack.url}{' (' + '; '.join(notes) + ')' if notes else ''}. Ctrl-C stops it.",
              flush=True)  # fmt: skip
        stack.run(stopping)
        return 0
    if args.command == "demo":
        return _demo(args, settings)
    if args.command == "broker":
        return _broker(args.action, settings)
    if args.command == "run":
        from stack.services import run_services, run_workers

        if args.workers != 1:
            return run_workers(settings, args.services, args.workers, args.host or settings.api_host,
                               args.port or settings.api_port)  # fmt: skip
        run_services(settings, args.services, args.host or settings.api_host, args.port or settings.api_port,
                     reuse_port=args.reuse_port)  # fmt: skip
        return 0
    if args.command == "topics":
        return _topics(settings, args.create)
    if args.command == "dlq":
        return _dlq(args, settings)
    if args.command == "admin":
        return _admin(args, settings)
    if args.command in ("replay", "runs"):
        return _replay_or_runs(args, settings)
    if args.command == "enrich":
        return _enrich(args, settings)
    if args.command == "check":
        from stack.check import check_command

        return check_command(settings, args.meeting, args.client_logs, args.json)
    if args.command == "bench":
        import importlib

        benchmark = importlib.import_module(f"bench.{args.benchmark}")
        return int(benchmark.main(args.bench_args))
    raise AssertionError(args.command)


def _replay_or_runs(args: argparse.Namespace, settings: Settings) -> int:
    from stack.runs import backfill_command, runs_command

    if args.command == "runs":
        return runs_command(settings, args.action, args.meeting, args.chosen if args.action == "compare" else [],
                            getattr(args, "reference", None))  # fmt: skip
    if args.since is not None:
        # A line per meeting unless --quiet, a terminal or not (a log of the backfill); the bars only on one.
        return backfill_command(settings, args.since, lambda meeting: _replay(args, settings, meeting, nice=0),
                                args.nice, args.quiet)  # fmt: skip
    return _replay(args, settings, args.meeting, args.nice)


def _replay(args: argparse.Namespace, settings: Settings, meeting: str, nice: int) -> int:
    """``palaver replay`` of one meeting, from the source ``--from`` names."""
    from stack.runs import RunsError, enrich_again_command, merge_command, replay_command

    if args.source in ("transcripts", "dialogues"):
        given = [o for o, v in (("--engine", args.engine), ("--model", args.model), ("--threads", args.threads),
                                ("--lanes", args.lanes)) if v is not None]  # fmt: skip
        if given:
            raise RunsError(f"{given[0]}: a replay from the {args.source} transcribes nothing (--from audio does)")
        if args.source == "dialogues":
            return enrich_again_command(settings, meeting, args.run, args.sets)
        return merge_command(settings, meeting, args.run, args.sets, nice, args.quiet)
    if args.run is not None:
        raise RunsError("--run: only with --from transcripts or dialogues (a replay of the audio names its run by "
                        "its settings)")  # fmt: skip
    return replay_command(settings, meeting, args.engine, args.model, args.sets, args.threads, args.lanes, nice,
                          args.quiet)  # fmt: skip


def _enrich(args: argparse.Namespace, settings: Settings) -> int:
    """``palaver enrich``: one JSON object on stdout; bad input is one ``palaver:`` line and exit 2."""
    import datetime
    import json

    from enrichment.backend import UnknownBackendError, backend_named
    from enrichment.transcript_file import TranscriptFileError, parse_transcript

    try:
        meeting_date = datetime.date.fromisoformat(args.meeting_date) if args.meeting_date else None
    except ValueError:
        print(f"palaver: --meeting-date {args.meeting_date!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    participants = tuple(p.strip() for p in (args.participants or "").split(",") if p.strip())
    try:
        backend = backend_named(args.backend or settings.enrichment_backend, settings)
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        transcript = parse_transcript(text, meeting_date, participants)
    except (UnknownBackendError, TranscriptFileError) as exc:
        print(f"palaver: {args.file}: {exc}" if isinstance(exc, TranscriptFileError) else f"palaver: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        print(f"palaver: cannot read {args.file}: {exc.strerror if isinstance(exc, OSError) else exc.reason}",
              file=sys.stderr)  # fmt: skip
        return 2
    if not transcript.dialogues:
        print(f"palaver: {args.file}: no dialogues", file=sys.stderr)
        return 2
    if transcript.meeting_date is None:
        transcript = transcript.model_copy(update={"meeting_date": datetime.date.today()})
    result = backend.enrich(transcript).to_json()
    keys = ("summary", "action_items", "keywords", "mood", "agenda", "metrics", "backend", "fallback")
    print(json.dumps({key: result[key] for key in keys}, indent=2, ensure_ascii=False))
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    from palaver.demo.run import run_demo
    from palaver.tls_client import client_context
    from stack.up import Stack

    client_log = Path(args.client_log).expanduser() if args.client_log else None
    if client_log is not None:
        try:
            client_log.open("ab").close()  # a log it cannot write is said before anything starts
        except OSError as exc:
            print(f"palaver: --client-log {args.client_log}: {exc.strerror}", file=sys.stderr)
            return 2
    own = Stack(settings)
    url = args.url or own.url
    tls = client_context(settings.tls_ca_file)
    stack = None
    try:
        httpx.get(f"{url}/healthz", timeout=2, verify=tls)
    except httpx.HTTPError as exc:
        if args.url:
            print(f"palaver: nothing answers at {args.url}: {exc}", file=sys.stderr)
            return 2
        # The Palaver it starts takes the demo's pace (a server's default limit is 1.5x real time).
        pace = max(settings.ingest_max_speed, args.speed * 1.25)
        stack = Stack(settings.model_copy(update={"ingest_max_speed": pace}))
        stack.start(serve_supervisor_metrics=False)
    try:
        status = asyncio.run(run_demo(url, args.speed, tls=tls, web_app=args.serve, client_log=client_log))
        if status == 0 and args.serve and stack is not None:
            print("Palaver keeps running; Ctrl-C stops it.", flush=True)
            from stack.supervisor import stop_on_signals

            stack.run(stop_on_signals())  # restarts a service that dies, as palaver up does
        return status
    finally:
        if stack:
            stack.stop()


def _broker(action: str, settings: Settings) -> int:
    from palaver.broker import embedded

    root = settings.data_dir / "kafka"
    paths = embedded.BrokerPaths(root)
    if action == "fetch":
        print(f"Kafka {embedded.KAFKA_VERSION} jars in {embedded.fetch_jars(quiet=False)}")
    elif action == "start":
        pid, started = embedded.start(root, settings.kafka_port)
        from palaver.streams.clients import wait_for_broker

        asyncio.run(wait_for_broker(settings, timeout_s=60))
        verb = "started" if started else "already running"
        print(f"broker {verb}: pid {pid}, 127.0.0.1:{settings.kafka_port}, log {paths.log}")
    elif action == "stop":
        print("broker stopped" if embedded.stop(root) else "broker was not running")
    elif action == "status":
        running = embedded.running_pid(paths)
        if running is None:
            print(f"broker not running (data {paths.data})")
            return 3
        print(f"broker running: pid {running}, 127.0.0.1:{settings.kafka_port}, log {paths.log}")
    return 0


def _topics(settings: Settings, create: bool) -> int:
    from palaver.events.registry import all_topics, topic_name
    from palaver.streams.clients import ensure_topics

    for spec in all_topics():
        name = topic_name(settings.topic_namespace, spec.name)
        consumers = ",".join(c.label.replace(" ", "") for c in spec.consumers)
        print(f"{name:<28} key={spec.key:<10} partitions={spec.partitions} retention_ms={spec.retention_ms} "
              f"cleanup={spec.cleanup_policy} dlq={spec.dlq or '-'}")  # fmt: skip
        print(f"{'':<28} producers={','.join(spec.producers) or '-'} consumers={consumers or '-'} "
              f"events={','.join(spec.schemas) or '-'}")  # fmt: skip
    if create:
        created = asyncio.run(ensure_topics(settings))
        print(f"created {len(created)} topic(s)")
    return 0


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    from stack import admin

    if args.action == "invite":
        print(admin.invite(settings, args.ttl_hours))
        return 0
    if args.action == "purge-meeting":
        admin.check_meeting_id(args.meeting_id)
        if not args.yes:
            _confirm_purge(args.meeting_id)
        report = asyncio.run(admin.purge(settings, args.meeting_id))
        rows = ", ".join(f"{n} from {table}" for table, n in sorted(report.rows_deleted.items())) or "none"
        keys = sum(len(k) for k in report.tombstones.values())
        print(f"purged {report.meeting_id}: rows deleted: {rows}; {keys} tombstone(s) on "
              f"{', '.join(sorted(report.tombstones))}")  # fmt: skip
        return 0
    password = _read_password(args.password_stdin)
    user = asyncio.run(admin.create_user(settings, args.username, args.email, password, args.role))
    print(f"created {user.role} {user.username} ({user.user_id})")
    return 0


def _confirm_purge(meeting_id: str) -> None:
    """Ask on the terminal for the meeting id again; raises AdminError unless it is typed exactly."""
    from stack.admin import NOT_CONFIRMED_EXIT, AdminError

    if not sys.stdin.isatty():
        raise AdminError("no terminal to confirm on: pass --yes to purge without asking")
    print(f"This erases meeting {meeting_id} for good: its transcripts, dialogues, edits, chat, members and "
          "links. Type its id again to confirm: ", end="", file=sys.stderr, flush=True)  # fmt: skip
    if sys.stdin.readline().strip() != meeting_id:
        raise AdminError("not confirmed: nothing was deleted", NOT_CONFIRMED_EXIT)


def _read_password(from_stdin: bool) -> str:
    """The new user's password: the first line of stdin, or asked twice on the terminal."""
    import getpass

    from stack.admin import AdminError

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise AdminError("--password-stdin: stdin held no password")
        return password
    if not sys.stdin.isatty():
        raise AdminError("no terminal to ask the password on: pipe it in with --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != password:
        raise AdminError("the passwords do not match")
    return password


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from palaver.streams import dlq_tools
    from palaver.streams.dlq_records import LIST_HEADER, list_line, show_text

    ref = dlq_tools.resolve(settings, args.topic)
    if args.action == "replay":
        outcome = asyncio.run(dlq_tools.replay(settings, ref, None if args.all else args.offset, args.force))
        print(f"replayed {len(outcome.replayed)} dead letter(s) from {ref.dlq} to {ref.source}"
              + (f"; {len(outcome.skipped)} replayed before, skipped (--force sends them again)" if outcome.skipped else ""))  # fmt: skip
        for mark in outcome.replayed:
            print(f"  {ref.dlq}@{mark.dlq_offset} -> {mark.topic}[{mark.partition}]@{mark.offset}")
        return 0
    contents = asyncio.run(dlq_tools.load(settings, ref))
    if args.action == "list":
        print(LIST_HEADER)
        for letter in contents.letters:
            print(list_line(letter, contents.marks.get(letter.dlq_offset)))
        return 0
    letter = contents.select(args.offset)[-1]
    print(show_text(letter, contents.marks.get(letter.dlq_offset)))
    return 0
