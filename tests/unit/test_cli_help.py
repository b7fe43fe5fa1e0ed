"""Every subcommand answers --help, and the help names what the code does."""

from __future__ import annotations

import pytest

from stack.cli import build_parser, main


@pytest.mark.parametrize(
    "argv",
    [[], ["up"], ["demo"], ["broker"], ["broker", "start"], ["broker", "stop"], ["broker", "status"],
     ["broker", "fetch"], ["run"], ["topics"], ["bench"], ["bench", "merger"], ["bench", "stt"], ["bench", "meetings"], ["bench", "decode"],
     ["bench", "enrichment"], ["bench", "ingest"], ["enrich"], ["dlq"],
     ["dlq", "list"], ["dlq", "show"], ["dlq", "replay"], ["admin"], ["admin", "create-user"], ["admin", "invite"],
     ["replay"], ["runs"], ["runs", "list"], ["runs", "compare"], ["check"]],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    assert "usage: palaver" in capsys.readouterr().out


def test_run_rejects_unknown_services(capsys: pytest.CaptureFixture[str]) -> None:
    from stack.services import UsageError, check_combination

    with pytest.raises(UsageError, match="unknown service"):
        check_combination(["transcribe"])
    check_combination(["api", "ingest", "store", "stt", "merger"])


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.speed == 1.0 and args.url is None


def test_engines_are_checked_with_a_clear_message() -> None:
    from pydantic import SecretStr

    from palaver.settings import Settings
    from stack.services import UsageError, check_engine

    with pytest.raises(UsageError, match="PALAVER_DEEPGRAM_API_KEY"):
        check_engine(Settings(stt_engine="deepgram"), ["stt"])
    with pytest.raises(UsageError, match="PALAVER_OPENAI_API_KEY"):
        check_engine(Settings(stt_engine="openai-realtime"), ["stt"])
    with pytest.raises(UsageError, match="choose one of whisper, deepgram, openai-realtime"):
        check_engine(Settings(stt_engine="vosk"), ["stt"])
    check_engine(Settings(stt_engine="deepgram"), ["api"])
    check_engine(Settings(), ["stt"])
    check_engine(Settings(stt_engine="deepgram", deepgram_api_key=SecretStr("dg-key")), ["stt"])
    check_engine(Settings(stt_engine="openai-realtime", openai_api_key=SecretStr("sk-key")), ["stt"])


def test_cloud_engines_are_built_from_settings_without_showing_the_key() -> None:
    from pydantic import SecretStr

    from palaver.settings import Settings
    from stack.services import streaming_engine

    dg = streaming_engine(Settings(stt_engine="deepgram", deepgram_api_key=SecretStr("dg-secret-1"),
                                   deepgram_url="ws://127.0.0.1:9", deepgram_model="nova-2"))  # fmt: skip
    assert (dg.name, dg.model) == ("deepgram", "nova-2")
    oa = streaming_engine(Settings(stt_engine="openai-realtime", openai_api_key=SecretStr("sk-secret-2"),
                                   openai_transcribe_model="whisper-1"))  # fmt: skip
    assert (oa.name, oa.model) == ("openai-realtime", "whisper-1")
    assert "api.openai.com" in repr(oa)
    for engine, key in ((dg, "dg-secret-1"), (oa, "sk-secret-2")):
        assert key not in repr(engine) and key not in str(engine)


def test_dlq_help_says_how_a_replay_is_remembered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["dlq", "replay", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "remembered in the dlq.replays topic" in out and "--force" in out and "dlq.replayed.from" in out


def test_dlq_replay_needs_an_offset_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["dlq", "replay", "transcripts"], ["dlq", "replay", "transcripts", "--all", "--offset", "3"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "--offset" in capsys.readouterr().err
    args = build_parser().parse_args(["dlq", "show", "transcripts.dlq", "--offset", "4"])
    assert (args.action, args.topic, args.offset) == ("show", "transcripts.dlq", 4)


@pytest.mark.parametrize(
    ("topic", "message"),
    [("nope", "palaver: unknown topic 'nope'; topics with a dead-letter topic: audio.frames, transcripts"),
     ("merger.state", "palaver: merger.state has no dead-letter topic")],
)
def test_dlq_names_a_topic_it_cannot_use_and_exits_2(topic: str, message: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["dlq", "list", topic]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "said"), [
    (["--from", "dialogues", "--set", "enrichment_backend=gpt"], "enrichment_backend=gpt: not a backend"),
    (["--from", "dialogues", "--lanes", "2"], "--lanes: a replay from the dialogues transcribes nothing"),
    (["--set", "merger_pause_ms=900"], "merge the transcripts again with it (--from transcripts)"),
    (["--from", "transcripts", "--set", "whisper_beam_size=2"], "it decides the transcription: replay the audio"),
    (["--from", "transcripts", "--set", "merger_pause_ms=soon"], "merger_pause_ms: Input should be a valid integer"),
    (["--from", "transcripts", "--model", "/m"], "--model: a replay from the transcripts transcribes nothing"),
    (["--run", "whisper:tiny.en"], "--run: only with --from transcripts or dialogues"),
    (["--set", "whisper_beam_size=wide"], "whisper_beam_size: Input should be a valid integer"),
    (["--engine", "deepgram"], "a replay transcribes with whisper only"),
])  # fmt: skip
def test_replay_refuses_bad_input_before_it_reads_anything(argv: list[str], said: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["replay", "--meeting", "mtg_1", *argv]) == 2
    assert said in capsys.readouterr().err


def test_runs_compare_takes_two_runs_or_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "compare", "--meeting", "mtg_1", "whisper:tiny.en"]) == 2
    assert "compare takes two runs (RUN_A RUN_B) or none" in capsys.readouterr().err


def test_a_bad_setting_is_one_palaver_line_naming_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from stack.cli import main

    monkeypatch.setenv("PALAVER_MEETING_IDLE_S", "-1")
    assert main(["topics"]) == 2
    assert capsys.readouterr().err.strip() == "palaver: bad setting: PALAVER_MEETING_IDLE_S: Input should be greater than 0"
