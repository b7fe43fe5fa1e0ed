"""The ingest wire protocol (pure functions) and the meeting clock."""

from __future__ import annotations

import orjson
import pytest

from ingest.clock import Placement, StreamMark, Timeline, ended, idle, merge, place, propose
from ingest.protocol import (
    MAX_FRAME_MS,
    MAX_MESSAGE_BYTES,
    MIN_FRAME_MS,
    CloseCode,
    ProtocolError,
    StreamFormat,
    ack_message,
    check_after_short_frame,
    check_frame,
    is_short_frame,
    parse_control,
    parse_header,
    ready_message,
)
from palaver.events import AudioFrameV1

HEADER = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}
FMT = StreamFormat(sample_rate=16000, encoding="pcm_s16le", channels=1)


def _header(**changes: object) -> str:
    obj = {**HEADER, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not _DROP}).decode()


_DROP = object()


def _rejects(fn, arg, code: int) -> ProtocolError:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError) as info:
        fn(arg)
    err = info.value
    assert err.code == code
    assert 4000 <= err.code <= 4999
    assert err.reason
    assert len(err.reason.encode("utf-8")) <= 123, "a WebSocket close reason must fit in 123 bytes"
    return err


# --- parse_header ----------------------------------------------------------------------------------------


def test_parse_header_valid() -> None:
    assert parse_header(_header()) == FMT
    assert parse_header(_header()).start_sample == 0


def test_parse_header_with_start_sample() -> None:
    fmt = parse_header(_header(start_sample=48000))
    assert fmt == StreamFormat(16000, "pcm_s16le", 1, start_sample=48000)


def test_parse_header_ignores_unknown_keys() -> None:
    assert parse_header(_header(client="palaver-web/1.0")) == FMT


@pytest.mark.parametrize("text", ["", "hello", "{", "{'sample_rate': 16000}", "\x00"])
def test_parse_header_not_json(text: str) -> None:
    err = _rejects(parse_header, text, CloseCode.BAD_HEADER)
    assert "JSON" in err.reason


@pytest.mark.parametrize("text", ["[]", '[16000, "pcm_s16le", 1]', "16000", '"header"', "null", "true"])
def test_parse_header_not_object(text: str) -> None:
    _rejects(parse_header, text, CloseCode.BAD_HEADER)


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("sample_rate",), ["sample_rate"]),
        (("encoding",), ["encoding"]),
        (("channels",), ["channels"]),
        (("sample_rate", "channels"), ["sample_rate", "channels"]),
        (("sample_rate", "encoding", "channels"), ["sample_rate", "encoding", "channels"]),
    ],
)
def test_parse_header_missing_fields(drop: tuple[str, ...], named: list[str]) -> None:
    err = _rejects(parse_header, _header(**{k: _DROP for k in drop}), CloseCode.BAD_HEADER)
    for name in named:
        assert name in err.reason


@pytest.mark.parametrize("encoding", ["pcm_f32le", "opus", "PCM_S16LE", "", None, 1, True, ["pcm_s16le"]])
def test_parse_header_unsupported_encoding(encoding: object) -> None:
    _rejects(parse_header, _header(encoding=encoding), CloseCode.UNSUPPORTED_FORMAT)


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 0, -16000, "16000", 16000.0, None, True, False, [16000]])
def test_parse_header_unsupported_sample_rate(rate: object) -> None:
    _rejects(parse_header, _header(sample_rate=rate), CloseCode.UNSUPPORTED_FORMAT)


@pytest.mark.parametrize("channels", [2, 0, -1, "1", 1.0, None, True, [1]])
def test_parse_header_unsupported_channels(channels: object) -> None:
    _rejects(parse_header, _header(channels=channels), CloseCode.UNSUPPORTED_FORMAT)


@pytest.mark.parametrize("start", [-1, 1.5, "0", None, True, False, [0], {"n": 1}])
def test_parse_header_bad_start_sample(start: object) -> None:
    _rejects(parse_header, _header(start_sample=start), CloseCode.BAD_HEADER)


@pytest.mark.parametrize("language", ["en", "de", "yue", None])
def test_parse_header_language(language: str | None) -> None:
    fmt = parse_header(_header(language=language))
    assert fmt.language == language  # null or absent: the STT worker's default
    assert parse_header(_header()).language is None


@pytest.mark.parametrize("language", ["EN", "en-US", "english", "xx", "", 7, True, ["en"], {"code": "en"}, "e" * 500])
def test_parse_header_bad_language(language: object) -> None:
    err = _rejects(parse_header, _header(language=language), CloseCode.BAD_HEADER)
    assert "language" in err.reason


@pytest.mark.parametrize(
    "changes",
    [{}, {"start_sample": 48000}, {"language": "yue"}, {"start_sample": 16000, "language": "de"}],
    ids=["plain", "start-sample", "language", "start-sample-and-language"],
)
def test_accepted_header_yields_frames_the_stt_worker_can_read(changes: dict[str, object]) -> None:
    """An accepted header produces frames whose Kafka headers decode downstream (ingest/app.py builds
    AudioFrameV1 from the format and a running sample count). That is why a float rate or channel count is
    refused (test_parse_header_unsupported_sample_rate, ..._channels): 16000.0 would reach the frame
    headers as b"16000.0", which the STT worker cannot read."""
    fmt = parse_header(_header(**changes))
    next_sample = fmt.start_sample + check_frame(640, fmt)
    frame = AudioFrameV1("m1", "alice", "m1/alice", fmt.sample_rate, next_sample, 0, b"\x00\x00" * 320,
                         language=fmt.language)  # fmt: skip
    decoded = AudioFrameV1.from_kafka(frame.pcm, dict(frame.kafka_headers()))
    expected_first = changes.get("start_sample", 0) + 320  # type: ignore[operator]
    assert (decoded.sample_rate, decoded.first_sample, decoded.language) == (16000, expected_first,
                                                                             changes.get("language"))  # fmt: skip


@pytest.mark.parametrize(
    "changes",
    [
        {"encoding": "é" * 200},
        {"encoding": "語" * 200},
        {"sample_rate": "ß" * 300},
        {"channels": "😀" * 100},
    ],
    ids=["encoding-latin", "encoding-cjk", "sample-rate-latin", "channels-emoji"],
)
def test_close_reason_fits_in_123_bytes_for_non_ascii_input(changes: dict[str, object]) -> None:
    _rejects(parse_header, _header(**changes), CloseCode.UNSUPPORTED_FORMAT)


def test_long_ascii_reason_is_truncated() -> None:
    _rejects(parse_header, _header(encoding="x" * 500), CloseCode.UNSUPPORTED_FORMAT)


# --- check_frame -----------------------------------------------------------------------------------------


def test_max_frame_bytes_is_250_ms() -> None:
    assert MAX_FRAME_MS == 250
    assert FMT.max_frame_bytes == 8000


@pytest.mark.parametrize(("size", "samples"), [(2, 1), (640, 320), (7998, 3999), (8000, 4000)])
def test_check_frame_ok(size: int, samples: int) -> None:
    assert check_frame(size, FMT) == samples


@pytest.mark.parametrize("size", [0, 1, 3, 641, 7999])
def test_check_frame_not_whole_samples(size: int) -> None:
    _rejects(lambda n: check_frame(n, FMT), size, CloseCode.ODD_FRAME)


@pytest.mark.parametrize("size", [8002, 16000, 1 << 20])
def test_check_frame_too_large(size: int) -> None:
    err = _rejects(lambda n: check_frame(n, FMT), size, CloseCode.FRAME_TOO_LARGE)
    assert str(size) in err.reason


def test_min_frame_is_20_ms() -> None:
    assert MIN_FRAME_MS == 20 and FMT.min_frame_samples == 320
    assert not is_short_frame(320, FMT) and is_short_frame(319, FMT)


def test_a_short_frame_may_only_be_the_last() -> None:
    check_after_short_frame(None, FMT)  # the frame before was not short
    err = _rejects(lambda n: check_after_short_frame(n, FMT), 160, CloseCode.FRAME_TOO_SMALL)
    assert "160 samples (10 ms)" in err.reason and "20 ms" in err.reason


def test_the_largest_message_read_holds_the_largest_frame() -> None:
    assert FMT.max_frame_bytes < 16000 * 2 * 2 <= MAX_MESSAGE_BYTES < 64 * 1024, "a 2 s frame still gets 4005"


def test_ready_carries_the_limits() -> None:
    limits = {"max_speed": 1.5, "burst_s": 10.0, "idle_s": 60.0, "max_stream_s": 14400}
    assert orjson.loads(ready_message(0, 1200, limits)) == {"type": "ready", "first_sample": 0,
                                                           "stream_start_ms": 1200, "limits": limits}  # fmt: skip


# --- parse_control and ack -------------------------------------------------------------------------------


def test_parse_control_end() -> None:
    assert parse_control('{"type":"end"}') == "end"
    assert parse_control('{"type": "end", "note": "bye"}') == "end"


@pytest.mark.parametrize(
    "text",
    ["", "end", "{", '{"type":"pause"}', '{"type":"END"}', "{}", '["end"]', '"end"', "null", '{"type": 1}'],
)
def test_parse_control_rejects(text: str) -> None:
    _rejects(parse_control, text, CloseCode.BAD_CONTROL)


def test_parse_control_reason_fits_for_long_unicode_type() -> None:
    _rejects(parse_control, orjson.dumps({"type": "ü" * 300}).decode(), CloseCode.BAD_CONTROL)


@pytest.mark.parametrize("samples", [0, 320, 16000 * 3600])
def test_ack_message(samples: int) -> None:
    assert orjson.loads(ack_message(samples)) == {"type": "ack", "samples": samples}


def test_close_codes_are_application_codes() -> None:
    codes = {k: v for k, v in vars(CloseCode).items() if k.isupper()}
    assert len(set(codes.values())) == len(codes)
    for name, code in codes.items():
        if name in ("BROKER_UNAVAILABLE", "SERVER_FULL"):  # the standard codes for "try again (later)"
            assert code == {"BROKER_UNAVAILABLE": 1011, "SERVER_FULL": 1013}[name]
        else:
            assert 4000 <= code <= 4999, name
            # 44xx are the access codes, shared with the live socket (palaver.auth.tickets).
            assert (name in ("UNAUTHENTICATED", "FORBIDDEN")) == (4400 <= code <= 4499), name


# --- the meeting's timeline (ingest/clock.py) -------------------------------------------------------------


class _Log:
    """The ``ingest.timelines`` fold as every ingest process holds it (ingest/timeline_log.py), without
    Kafka: a connection writes its proposal (made from ``view``, what its process held; the fold by default)
    and is placed from the fold just before and after that record."""

    def __init__(self) -> None:
        self.timelines: dict[str, Timeline] = {}
        self.records: list[tuple[str, Timeline | None]] = []

    def write(self, meeting_id: str, record: Timeline | None) -> tuple[Timeline | None, Timeline | None]:
        self.records.append((meeting_id, record))
        before = self.timelines.get(meeting_id)
        after = merge(before, record)
        if after is None:
            self.timelines.pop(meeting_id, None)
        else:
            self.timelines[meeting_id] = after
        return before, after

    def place(self, meeting_id: str, stream: str, now_ms: int, start_sample: int, sample_rate: int = 16000,
              view: Timeline | str | None = "fold") -> Placement:  # fmt: skip
        held = self.timelines.get(meeting_id) if view == "fold" else view
        assert not isinstance(held, str)
        before, after = self.write(meeting_id, propose(held, stream, now_ms, start_sample, sample_rate))
        assert after is not None
        return place(before, after, stream, now_ms, start_sample, sample_rate)

    def end(self, meeting_id: str, stream: str, end_sample: int, now_ms: int) -> None:
        if meeting_id in self.timelines:
            self.write(meeting_id, ended(self.timelines[meeting_id], stream, end_sample, now_ms))


def test_first_stream_at_epoch_gets_zero() -> None:
    log = _Log()
    placed = log.place("m1", "m1/alice", now_ms=1_700_000_000_000, start_sample=0)
    assert (placed.stream_start_ms, placed.first_sample, placed.epoch_ms) == (0, 0, 1_700_000_000_000)
    assert {m: t.epoch_ms for m, t in log.timelines.items()} == {"m1": 1_700_000_000_000}


def test_second_stream_gets_its_offset_from_the_epoch() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    assert log.place("m1", "m1/bob", now_ms=12_345, start_sample=0).stream_start_ms == 2_345


def test_meetings_have_independent_clocks() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    assert log.place("m2", "m2/alice", now_ms=50_000, start_sample=0).stream_start_ms == 0
    assert log.place("m2", "m2/bob", now_ms=51_000, start_sample=0).stream_start_ms == 1_000


def test_reconnect_keeps_placement() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    assert log.place("m1", "m1/bob", now_ms=13_000, start_sample=0).stream_start_ms == 3_000
    # bob drops and resumes 40 s later at sample 32000 (2 s): his sample 0 stays where it was
    resumed = log.place("m1", "m1/bob", now_ms=53_000, start_sample=32_000)
    assert (resumed.stream_start_ms, resumed.first_sample) == (3_000, 32_000)


def test_resume_on_unknown_stream_backdates() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    # bob resumes at 5 s of audio (his timeline was dropped), 20 s into the meeting: sample 0 was at 15 s
    assert log.place("m1", "m1/bob", now_ms=30_000, start_sample=80_000).stream_start_ms == 15_000


def test_backdating_never_goes_before_the_meeting_start() -> None:
    log = _Log()
    assert log.place("m1", "m1/alice", now_ms=10_000, start_sample=160_000).stream_start_ms == 0
    assert log.place("m1", "m1/bob", now_ms=11_000, start_sample=160_000).stream_start_ms == 0


def test_fresh_connection_of_a_known_stream_continues_its_timeline() -> None:
    log = _Log()
    first = log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    assert first.first_sample == 0
    log.end("m1", "m1/alice", 48_000, now_ms=13_000)  # 3 s of audio, then the tab was closed
    again = log.place("m1", "m1/alice", now_ms=20_000, start_sample=0)
    assert again.stream_start_ms == first.stream_start_ms
    assert again.first_sample == 160_000  # 10 s after the stream's start, not sample 0 again


def test_fresh_connection_never_starts_before_audio_already_received() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    log.end("m1", "m1/alice", 320_000, now_ms=10_900)  # the client streamed faster than real time
    assert log.place("m1", "m1/alice", now_ms=11_000, start_sample=0).first_sample == 320_000


def test_resume_uses_the_clients_position() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    log.end("m1", "m1/alice", 48_000, now_ms=13_000)
    assert log.place("m1", "m1/alice", now_ms=30_000, start_sample=40_000).first_sample == 40_000


def test_two_processes_placing_first_streams_at_once_agree_on_the_record_that_landed_first() -> None:
    """Neither process knew the meeting when it proposed; the partition took alice's record first, so its
    epoch is the meeting's, and bob (proposed with his process's own epoch) is rebased onto it."""
    log = _Log()
    alice = log.place("m1", "m1/alice", now_ms=10_000, start_sample=0, view=None)
    bob = log.place("m1", "m1/bob", now_ms=10_007, start_sample=0, view=None)
    assert (alice.epoch_ms, alice.stream_start_ms) == (10_000, 0)
    assert (bob.epoch_ms, bob.stream_start_ms, bob.first_sample) == (10_000, 7, 0)


def test_a_stale_record_never_moves_a_placed_stream() -> None:
    """A process that had not read alice's placement proposes her again (a move to it at once): the first
    placement stands, and the resume continues at the client's position."""
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    log.place("m1", "m1/bob", now_ms=12_000, start_sample=0)
    moved = log.place("m1", "m1/bob", now_ms=15_000, start_sample=48_000, view=None)
    assert (moved.epoch_ms, moved.stream_start_ms, moved.first_sample) == (10_000, 2_000, 48_000)


def test_every_process_folding_the_records_holds_the_same_timelines() -> None:
    """What any process folds from the topic equals what the writers were answered from; and the last
    record (what compaction keeps) states less only where its writer restates the fold."""
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0, view=None)
    log.place("m1", "m1/bob", now_ms=10_007, start_sample=0, view=None)
    log.end("m1", "m1/alice", 16_000, now_ms=11_000)
    replayed = _Log()
    for meeting_id, record in log.records:
        replayed.write(meeting_id, record)
    assert replayed.timelines == log.timelines
    assert log.records[1][1] != log.timelines["m1"], "bob's record missed alice: its writer restates the fold"
    assert log.records[-1][1] == log.timelines["m1"], "the end record was written from the whole fold"


def test_end_samples_only_grow() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    log.end("m1", "m1/alice", 48_000, now_ms=13_000)
    log.end("m1", "m1/alice", 16_000, now_ms=14_000)  # an older connection on another process noticed late
    assert log.timelines["m1"].streams["m1/alice"] == StreamMark(0, 48_000)


def test_the_timeline_goes_through_json_unchanged() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    log.end("m1", "m1/alice", 48_000, now_ms=13_000)
    timeline = log.timelines["m1"]
    assert Timeline.from_json(orjson.loads(orjson.dumps(timeline.to_json()))) == timeline


def test_an_idle_meeting_is_released_only_with_no_stream_connected_for_longer_than_the_limit() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    log.end("m1", "m1/alice", 16_000, now_ms=30_000)
    assert idle(log.timelines, {"m1"}, now_ms=10_000_000, idle_ms=60_000) == [], "connected in this process"
    assert idle(log.timelines, set(), now_ms=90_000, idle_ms=60_000) == [], "idle for exactly the limit: kept"
    assert idle(log.timelines, set(), now_ms=90_001, idle_ms=60_000) == ["m1"]


def test_a_released_meeting_starts_a_new_timeline() -> None:
    """What dropping a timeline costs (docs/architecture.md, "Time"): a stream that comes back is placed on
    a timeline that starts anew."""
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    log.end("m1", "m1/alice", 48_000, now_ms=13_000)
    log.write("m1", None)
    again = log.place("m1", "m1/alice", now_ms=500_000, start_sample=0)
    assert (again.stream_start_ms, again.first_sample, again.epoch_ms) == (0, 0, 500_000)


def test_a_connection_ending_after_its_meeting_was_dropped_changes_nothing() -> None:
    log = _Log()
    log.place("m1", "m1/alice", now_ms=10_000, start_sample=0)
    log.write("m1", None)  # the meeting ended while alice was still connected
    log.place("m1", "m1/bob", now_ms=20_000, start_sample=0)
    log.end("m1", "m1/alice", 48_000, now_ms=21_000)
    assert set(log.timelines["m1"].streams) == {"m1/bob"}, "bob's timeline is not alice's"
