"""Every subcommand answers --help, and the help names what the code does."""

from __future__ import annotations

import pytest

from stack.cli import build_parser, main


@pytest.mark.parametrize(
    "argv",
    [[], ["up"], ["demo"], ["broker"], ["broker", "start"], ["broker", "stop"], ["broker", "status"],
     ["broker", "fetch"], ["run"], ["topics"], ["bench"], ["bench", "merger"], ["bench", "stt"]],
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
