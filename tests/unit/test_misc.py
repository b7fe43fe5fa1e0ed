"""Small pure helpers: word error rate, ids, migrations, store rows, topic registry, settings, demo timeline
and audio helpers."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from palaver import ids
from palaver.demo.script import DEMO_MEETING, GAP_MS, Line, place_lines
from palaver.demo.synth import resample, trim_silence
from palaver.events import DialogueUpdateV1, DialogueUtterance, StreamStoppedV1, TranscriptFinalV1, WordV1
from palaver.events.registry import (
    AUDIO_FRAMES,
    DIALOGUES,
    TOPICS,
    TRANSCRIPTS,
    all_topics,
    dlq_spec,
    topic_name,
)
from palaver.settings import EMBEDDED_KAFKA_PORT, Settings
from palaver.store import migrations
from palaver.store.migrations import apply_migrations, migration_files, split_statements
from palaver.store.rows import COLUMNS, DIALOGUE_COLUMNS, UTTERANCE_COLUMNS, Provenance, rows_for
from palaver.textmetrics import normalize, word_error_rate

# --- word error rate -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "hypothesis", "wer"),
    [
        ("the cat sat", "the cat sat", 0.0),
        ("the cat sat", "the dog sat", 1 / 3),
        ("the cat sat", "the cat", 1 / 3),
        ("the cat sat", "the cat sat down", 1 / 3),
        ("the cat sat", "", 1.0),
        ("a b", "a b c d", 1.0),
        ("a b c d", "d c b a", 1.0),
        ("Hello, World!", "hello world", 0.0),
        ("well-known fact", "well known fact", 0.0),
        ("It's fine.", "its fine", 0.5),
        ("", "", 0.0),
        ("", "anything", 1.0),
        ("...", "", 0.0),
    ],
)
def test_word_error_rate_known_values(reference: str, hypothesis: str, wer: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(wer)


def test_normalize() -> None:
    assert normalize("Don't STOP—the 3 well-known cats!") == [
        "don't",
        "stop",
        "the",
        "3",
        "well",
        "known",
        "cats",
    ]


_words = st.lists(st.sampled_from(["a", "b", "c", "the", "cat"]), max_size=8).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(reference=_words.filter(bool), hypothesis=_words)
def test_word_error_rate_matches_jiwer(reference: str, hypothesis: str) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(jiwer.wer(reference, hypothesis))


# --- ids -------------------------------------------------------------------------------------------------


def test_ids_are_deterministic_and_prefixed() -> None:
    assert ids.utterance_id("m1/alice", 16000) == ids.utterance_id("m1/alice", 16000)
    assert ids.dialogue_id("m1", "utt_x") == ids.dialogue_id("m1", "utt_x")
    assert ids.event_id("transcript.final", "utt_x", "run") == ids.event_id(
        "transcript.final", "utt_x", "run"
    )
    assert re.fullmatch(r"utt_[0-9a-f]{24}", ids.utterance_id("m1/alice", 0))
    assert re.fullmatch(r"dlg_[0-9a-f]{24}", ids.dialogue_id("m1", "utt_x"))
    assert re.fullmatch(r"evt_[0-9a-f]{24}", ids.event_id("k"))


def test_ids_differ_for_different_inputs() -> None:
    assert ids.utterance_id("m1/alice", 0) != ids.utterance_id("m1/alice", 512)
    assert ids.utterance_id("m1/alice", 0) != ids.utterance_id("m1/bob", 0)
    assert ids.dialogue_id("m1", "utt_x") != ids.dialogue_id("m2", "utt_x")
    assert ids.event_id("dialogue.update", "dlg_x", 1) != ids.event_id("dialogue.update", "dlg_x", 2)
    # parts are separated, so shifting characters between parts gives another id
    assert ids.utterance_id("m1/a", 12) != ids.utterance_id("m1/a1", 2)
    assert ids.event_id("ab", "c") != ids.event_id("a", "bc")


def test_ids_are_stable_across_releases() -> None:
    """Ids are stored in ClickHouse and Kafka: changing the hash breaks dedup of re-processed data."""
    digest = hashlib.blake2b(b"m1/alice\x1f16000", digest_size=12).hexdigest()
    assert ids.utterance_id("m1/alice", 16000) == "utt_" + digest


def test_stream_id() -> None:
    assert ids.stream_id("standup", "alice") == "standup/alice"


@pytest.mark.parametrize("value", ["a", "alice", "Alice-01", "m.1_x-y", "0", "x" * 64, "standup-2024-06-03"])
def test_valid_id_parts(value: str) -> None:
    assert ids.is_valid_id_part(value)


@pytest.mark.parametrize(
    "value",
    ["", "x" * 65, "a/b", "a b", "ali ce", "é", "a:b", "a\\b", "a\tb", "\nalice", "a%2Fb"],
)
def test_invalid_id_parts(value: str) -> None:
    assert not ids.is_valid_id_part(value)


@pytest.mark.parametrize("value", ["alice\n", "x" * 64 + "\n"], ids=["alice-newline", "64-chars-newline"])
def test_id_part_with_trailing_newline_is_invalid(value: str) -> None:
    """Ids arrive percent-decoded from the URL path (``/v1/meetings/alice%0A/...``) and end up in Kafka keys
    and headers and ClickHouse rows: a trailing newline is not one of ``[A-Za-z0-9._-]``."""
    assert not ids.is_valid_id_part(value)


# --- migrations ------------------------------------------------------------------------------------------


def test_split_statements() -> None:
    sql = """-- a comment; with a semicolon
CREATE TABLE a (x Int8);
  -- indented comment
CREATE TABLE b (y Int8)
ENGINE = Memory;

;
"""
    assert split_statements(sql) == ["CREATE TABLE a (x Int8)", "CREATE TABLE b (y Int8)\nENGINE = Memory"]
    assert split_statements("") == []
    assert split_statements("-- only\n-- comments") == []


def test_shipped_migrations() -> None:
    files = migration_files()
    assert files, "no migrations shipped"
    numbers = [n for n, _, _ in files]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert files[0][:2] == (1, "transcripts_and_dialogues")
    for _, _, sql in files:
        for statement in split_statements(sql):
            assert statement.upper().startswith(("CREATE", "ALTER", "DROP", "INSERT", "RENAME")), statement
            assert "{db}" in statement


class _FakeFiles:
    def __init__(self, root: Path):
        self.root = root

    def files(self, package: str) -> Path:
        return self.root


def test_migration_files_ordering_is_numeric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "0010_ten.sql",
        "0002_two.sql",
        "0001_one.sql",
        "0003_three_words.sql",
        "README.md",
        "0004_x.txt",
    ):
        (tmp_path / name).write_text(f"-- {name}")
    monkeypatch.setattr(migrations, "resources", _FakeFiles(tmp_path))
    files = migration_files()
    assert [(n, name) for n, name, _ in files] == [(1, "one"), (2, "two"), (3, "three_words"), (10, "ten")]
    assert files[-1][2] == "-- 0010_ten.sql"


class _FakeStore:
    database = "palaver_test"

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.versions: set[int] = set()

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.commands.append(sql)
        if parameters and "v" in parameters:
            self.versions.add(parameters["v"])

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return [{"version": v} for v in self.versions]


def test_apply_migrations_once() -> None:
    store = _FakeStore()
    assert apply_migrations(store) == [n for n, _, _ in migration_files()]
    assert any("palaver_test.utterances" in c for c in store.commands)
    assert not any("{db}" in c for c in store.commands)
    assert apply_migrations(store) == []


# --- store rows ------------------------------------------------------------------------------------------


def _table_columns(table: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """Column names of a table in the shipped migrations, in order, and those of them that have a DEFAULT."""
    sql = "\n".join(s for _, _, s in migration_files())
    body = re.search(rf"CREATE TABLE IF NOT EXISTS \{{db\}}\.{table} \((.*?)\n\) ENGINE", sql, re.S)
    assert body, table
    lines = [line.strip().rstrip(",") for line in body.group(1).strip().splitlines()]
    columns = [line.split()[0] for line in lines if line]
    defaulted = {line.split()[0] for line in lines if " DEFAULT " in line}
    # Later migrations add columns: ALTER TABLE {db}.t ADD COLUMN IF NOT EXISTS name Type AFTER other
    for name, after in re.findall(rf"ALTER TABLE \{{db\}}\.{table} ADD COLUMN IF NOT EXISTS (\w+) .*? AFTER (\w+)", sql):
        columns.insert(columns.index(after) + 1, name)
    return tuple(columns), frozenset(defaulted)


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_row_columns_match_the_migration(table: str) -> None:
    """A row names every column without a DEFAULT, in table order; a column with a DEFAULT it may set
    (``users.created_at`` comes from the event, so a replay keeps it)."""
    columns, defaulted = _table_columns(table)
    assert COLUMNS[table] == tuple(c for c in columns if c not in defaulted or c in COLUMNS[table])


def test_row_for_transcript() -> None:
    event = TranscriptFinalV1(
        event_id="evt_1", utterance_id="utt_1", meeting_id="m1", speaker_id="alice", stream_id="m1/alice",
        start_ms=100, end_ms=900, start_sample=0, end_sample=16000, sample_rate=16000, text="hi there",
        words=(WordV1(word="hi", start_ms=100, end_ms=300, probability=0.9),), confidence=0.8, language="en",
        engine="whisper", model="tiny.en", run="whisper:tiny.en",
    )  # fmt: skip
    ((table, row),) = rows_for(event, Provenance("transcripts", 1, 7))
    assert table == "utterances"
    assert len(row) == len(UTTERANCE_COLUMNS)
    named = dict(zip(UTTERANCE_COLUMNS, row, strict=True))
    assert named["utterance_id"] == "utt_1"
    assert named["words"] == '[{"word":"hi","start_ms":100,"end_ms":300,"probability":0.9}]'
    assert named["version"] == 1
    assert (named["kafka_topic"], named["kafka_partition"], named["kafka_offset"]) == ("transcripts", 1, 7)


def test_row_for_dialogue() -> None:
    event = DialogueUpdateV1(
        event_id="evt_2", dialogue_id="dlg_1", meeting_id="m1", speaker_id="alice", start_ms=100, end_ms=900,
        text="hi there", status="final", revision=3, position=2, utterance_ids=("utt_1", "utt_2"),
        run="whisper:tiny.en", utterances=(
            DialogueUtterance(utterance_id="utt_1", start_ms=100, end_ms=400, text="hi", final=True),
            DialogueUtterance(utterance_id="utt_2", start_ms=500, end_ms=900, text="there", final=True)),
    )  # fmt: skip
    ((table, row),) = rows_for(event, Provenance("dialogues", 0, 0))
    assert table == "dialogues"
    assert len(row) == len(DIALOGUE_COLUMNS)
    named = dict(zip(DIALOGUE_COLUMNS, row, strict=True))
    assert (named["dialogue_text"], named["status"], named["revision"], named["position"]) == (
        "hi there",
        "final",
        3,
        2,
    )
    assert named["utterance_ids"] == ["utt_1", "utt_2"]
    assert named["utterances"] == ('[{"utterance_id":"utt_1","start_ms":100,"end_ms":400,"text":"hi","final":true},'
                                   '{"utterance_id":"utt_2","start_ms":500,"end_ms":900,"text":"there","final":true}]')


def test_row_for_ignores_lifecycle_events() -> None:
    event = StreamStoppedV1(
        event_id="evt_3", meeting_id="m1", speaker_id="alice", stream_id="m1/alice", stream_start_ms=0,
        end_sample=16000, reason="end",
    )  # fmt: skip
    assert rows_for(event, Provenance("transcripts", 0, 0)) == []


# --- registry --------------------------------------------------------------------------------------------


def test_all_topics() -> None:
    topics = all_topics()
    names = [t.name for t in topics]
    assert names == [
        "audio.frames", "transcripts", "dialogues", "edits", "users", "chat", "meetings", "meeting.vocabulary", "sessions",
        "name.claims", "name.decisions", "enrichment.requests", "insights",
        "audio.frames.dlq", "transcripts.dlq", "dialogues.dlq", "edits.dlq", "users.dlq", "chat.dlq",
        "meetings.dlq", "sessions.dlq", "name.claims.dlq", "enrichment.requests.dlq", "insights.dlq",
        "merger.state", "name.owners", "enrichment.state", "ingest.timelines", "dlq.replays",
    ]  # fmt: skip
    assert len(set(names)) == len(names)
    by_name = {t.name: t for t in topics}
    for spec in topics[13:24]:
        assert spec.partitions == 1
        assert spec.dlq is None
        assert spec.consumers == ()
        assert spec.cleanup_policy == "delete"  # a DLQ of a compacted topic (users) is not compacted
    state = by_name["merger.state"]
    assert state.kafka_config()["cleanup.policy"] == "compact"  # newest state per meeting, forever
    assert state.partitions == TRANSCRIPTS.partitions  # co-partitioned with the input it derives from
    progress = by_name["enrichment.state"]
    assert progress.kafka_config()["cleanup.policy"] == "compact"
    # One enrichment consumer owns a meeting's dialogues, requests and progress: all three co-partitioned.
    assert progress.partitions == by_name["enrichment.requests"].partitions == by_name["dialogues"].partitions
    owners = by_name["name.owners"]
    assert owners.kafka_config()["cleanup.policy"] == "compact"  # each name's owner, forever
    assert owners.partitions == by_name["name.claims"].partitions
    replays = by_name["dlq.replays"]
    # A replay mark is written after its dead letter: with the DLQs' retention it outlives it.
    assert replays.retention_ms == by_name["audio.frames.dlq"].retention_ms and replays.partitions == 1
    assert replays.kafka_config()["cleanup.policy"] == "compact,delete"


def test_dlq_spec_inherits_from_source() -> None:
    dlq = dlq_spec(AUDIO_FRAMES)
    assert dlq.name == "audio.frames.dlq"
    assert dlq.key == AUDIO_FRAMES.key
    assert dlq.events == AUDIO_FRAMES.events
    assert dlq.producers == ("stt",)  # the consumer that dead-letters its bad messages
    assert dlq.config == {"max.message.bytes": str(1 << 20)}  # a frame that failed must fit in its DLQ
    # The live fan-out and palaver replay read dialogues without a group and commit nothing: they skip a bad
    # message, so only the store writer and enrichment dead-letter there.
    assert [c.name for c in DIALOGUES.consumers] == ["store", "live", "enrichment", "palaver replay"]
    assert dlq_spec(DIALOGUES).producers == ("store", "enrichment")


def test_topic_specs() -> None:
    assert AUDIO_FRAMES.key == "stream_id"  # one STT worker owns a stream
    assert TRANSCRIPTS.key == DIALOGUES.key == "meeting_id"  # one merger task owns a meeting
    assert TRANSCRIPTS.retention_ms == DIALOGUES.retention_ms == -1
    assert TRANSCRIPTS.kafka_config() == {"retention.ms": "-1", "cleanup.policy": "delete"}
    assert AUDIO_FRAMES.kafka_config()["max.message.bytes"] == str(1 << 20)
    for spec in TOPICS:
        assert spec.schemas
        for schema in spec.schemas:
            event, _, version = schema.partition("/")
            assert event and version.isdigit()


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [
        ("", "transcripts", "transcripts"),
        ("test-1a2b", "transcripts", "test-1a2b.transcripts"),
        ("prod", "audio.frames.dlq", "prod.audio.frames.dlq"),
    ],
)
def test_topic_name(namespace: str, name: str, expected: str) -> None:
    assert topic_name(namespace, name) == expected


# --- settings --------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("PALAVER_"):
            monkeypatch.delenv(key)


def test_settings_defaults(tmp_path: Path, clean_env: None) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.kafka_bootstrap is None
    assert s.kafka_port == EMBEDDED_KAFKA_PORT == 9092
    assert s.uses_embedded_broker
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.clickhouse_url is None
    assert s.uses_chdb
    assert s.clickhouse_dsn == f"chdb://{tmp_path / 'clickhouse'}"
    assert s.clickhouse_database == "palaver"
    assert s.topic_namespace == ""
    assert s.group_id("merger") == "merger"
    assert s.log_dir == tmp_path / "logs"
    assert (s.vad_threshold, s.vad_hysteresis, s.vad_min_silence_ms, s.vad_min_speech_ms) == (0.3, 0.15, 500, 200)
    assert (s.vad_pad_ms, s.vad_trailing_pad_ms, s.stt_prompt) == (400, 300, False)
    assert s.max_utterance_ms == 10_000
    assert s.merger_pause_ms == 1500
    assert s.stt_language == "en"


def test_settings_explicit_values(tmp_path: Path, clean_env: None) -> None:
    s = Settings(
        data_dir=tmp_path, kafka_bootstrap="kafka-1:9092,kafka-2:9092", clickhouse_url="http://ch:8123",
        topic_namespace="test-42", whisper_model_dir="/models/tiny.en", kafka_port=19092,
    )  # fmt: skip
    assert s.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert not s.uses_embedded_broker
    assert s.clickhouse_dsn == "http://ch:8123"
    assert not s.uses_chdb
    assert s.group_id("stt") == "test-42.stt"
    assert s.model_dir == "/models/tiny.en"


def test_settings_embedded_port(tmp_path: Path, clean_env: None) -> None:
    assert Settings(data_dir=tmp_path, kafka_port=19092).bootstrap_servers == "127.0.0.1:19092"


def test_settings_are_frozen(tmp_path: Path, clean_env: None) -> None:
    s = Settings(data_dir=tmp_path)
    with pytest.raises(ValidationError):
        s.api_port = 1  # type: ignore[misc]


def test_settings_read_env_with_prefix(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PALAVER_TOPIC_NAMESPACE", "from-env")
    monkeypatch.setenv("PALAVER_MERGER_PAUSE_MS", "900")
    s = Settings(data_dir=tmp_path)
    assert (s.topic_namespace, s.merger_pause_ms) == ("from-env", 900)
    assert Settings(data_dir=tmp_path, topic_namespace="explicit").topic_namespace == "explicit"


# --- demo timeline and audio -----------------------------------------------------------------------------


def test_place_lines_with_gaps() -> None:
    lines = (Line("alice", "one"), Line("bob", "two"), Line("alice", "three"))
    placed = place_lines(lines, [1000, 2000, 500], gap_ms=900)
    assert [(p.speaker_id, p.start_ms, p.end_ms) for p in placed] == [
        ("alice", 500, 1500),
        ("bob", 2400, 4400),
        ("alice", 5300, 5800),
    ]
    assert [p.text for p in placed] == ["one", "two", "three"]


def test_place_lines_overlap_starts_before_previous_end() -> None:
    lines = (Line("alice", "one"), Line("bob", "two", overlap_ms=600), Line("carol", "three"))
    placed = place_lines(lines, [2000, 1000, 500], gap_ms=900)
    alice, bob, carol = placed
    assert bob.start_ms == alice.end_ms - 600
    assert alice.start_ms < bob.start_ms < alice.end_ms
    # the next line waits for whichever ends last
    assert carol.start_ms == max(alice.end_ms, bob.end_ms) + 900


def test_place_lines_overlap_keeps_order_of_starts() -> None:
    # an overlap longer than the previous line still starts after it (by 200 ms)
    placed = place_lines((Line("alice", "hi"), Line("bob", "yes", overlap_ms=5000)), [800, 1000])
    assert placed[1].start_ms == placed[0].start_ms + 200


def test_place_lines_demo_meeting() -> None:
    durations = [3000] * len(DEMO_MEETING)
    placed = place_lines(DEMO_MEETING, durations)
    starts = [p.start_ms for p in placed]
    assert starts == sorted(starts)
    overlapping = [i for i, line in enumerate(DEMO_MEETING) if line.overlap_ms]
    assert overlapping
    for i in overlapping:
        assert placed[i].start_ms < placed[i - 1].end_ms
    assert placed[1].start_ms == placed[0].end_ms + GAP_MS


def test_place_lines_requires_one_duration_per_line() -> None:
    with pytest.raises(ValueError):
        place_lines((Line("alice", "one"),), [1000, 2000])


@pytest.mark.parametrize(("src", "dst", "n"), [(24000, 16000, 24000), (22050, 16000, 22050), (8000, 16000, 800),
                                                (16000, 16000, 1234), (44100, 16000, 441)])  # fmt: skip
def test_resample_length(src: int, dst: int, n: int) -> None:
    audio = np.sin(np.arange(n) / 10).astype(np.float64)
    out = resample(audio, src, dst)
    assert out.dtype == np.float32
    assert len(out) == n * dst // src


def test_resample_keeps_a_low_tone() -> None:
    src, dst = 24000, 16000
    t = np.arange(src) / src
    out = resample(np.sin(2 * np.pi * 300 * t), src, dst)
    expected = np.sin(2 * np.pi * 300 * np.arange(dst) / dst)
    middle = slice(100, dst - 100)
    assert np.max(np.abs(out[middle] - expected[middle])) < 0.05


def test_resample_removes_a_tone_above_the_new_nyquist() -> None:
    src = 24000
    t = np.arange(src) / src
    out = resample(np.sin(2 * np.pi * 10_000 * t), src, 16000)
    assert np.sqrt(np.mean(out[100:-100] ** 2)) < 0.1  # 10 kHz cannot exist at 16 kHz: filtered, not aliased


def test_trim_silence() -> None:
    audio = np.concatenate([np.zeros(100), [0.005, 0.02, 0.5, -0.3, 0.0, 0.01], np.zeros(50)]).astype(
        np.float32
    )
    out = trim_silence(audio)
    np.testing.assert_array_equal(out, np.array([0.02, 0.5, -0.3, 0.0, 0.01], np.float32))
    assert len(trim_silence(np.zeros(1000, np.float32))) == 0
    assert len(trim_silence(np.full(10, 0.001, np.float32))) == 0
    np.testing.assert_array_equal(trim_silence(np.array([-0.5], np.float32)), [-0.5])
