"""Every subcommand answers --help, and the help names what the code does."""

from __future__ import annotations

import pytest

from palaver.cli import build_parser, main


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
    from palaver.services import UsageError, check_combination

    with pytest.raises(UsageError, match="unknown service"):
        check_combination(["transcribe"])
    check_combination(["api", "ingest", "store", "stt", "merger"])


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.speed == 1.0 and args.url is None


def test_unwired_engines_are_refused_with_a_clear_message() -> None:
    from palaver.services import UsageError, check_engine
    from palaver.settings import Settings

    with pytest.raises(UsageError, match="only the whisper engine"):
        check_engine(Settings(stt_engine="deepgram"), ["stt"])
    check_engine(Settings(stt_engine="deepgram"), ["api"])
    check_engine(Settings(), ["stt"])
