"""What a replay may change, and the settings and run it transcribes with (``stt_workers.replay``).

``--set KEY=VALUE`` takes the settings that decide a replay's transcript (``TRANSCRIPT_SETTINGS``): they
name its run (``palaver.runs.replay_run``). It refuses, each with its reason, the STT settings that only
shape live decoding (partials, batching: a replay has none), those that change how fast and not what
(``--threads``, ``--lanes``), the merger's (the running merger builds every run's dialogues with its own;
``--from transcripts`` takes them: ``merger.replay``),
and any other name. Values are validated as the environment's would be.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from palaver.runs import replay_run
from palaver.settings import Settings

# STT settings that decide what a replay transcribes: segmentation, the decode, its language and device.
TRANSCRIPT_SETTINGS = (
    "whisper_beam_size", "whisper_decode", "whisper_compute_type", "whisper_device", "stt_language",
    "vad_threshold", "vad_min_silence_ms", "vad_min_speech_ms", "vad_pad_ms", "max_utterance_ms",
    "vad_long_cut_pause_ms",
)  # fmt: skip
LIVE_ONLY = ("vad_eager_silence_ms", "stt_final_lanes", "stt_partial_batch_audio_s", "stt_partial_deadline_ms",
             "stt_max_batch", "whisper_gpu_wait")  # fmt: skip
LIVE_ONLY_REASON = ("it shapes live decoding (partials, eager finals, batching), not a replay's transcript: a "
                    "replay decodes each utterance once, alone")  # fmt: skip
REFUSED = {
    **dict.fromkeys(LIVE_ONLY, LIVE_ONLY_REASON),
    "whisper_threads": "it changes how fast, not what: use --threads",
    "stt_decode_lanes": "it changes how fast, not what: use --lanes",
    "stt_engine": "use --engine",
    "whisper_model_dir": "use --model",
    "merger_pause_ms": "the running merger builds every run's dialogues with its own setting: merge the "
    "transcripts again with it (--from transcripts)",
}
ENGINES = ("whisper",)
# Decoding each utterance alone makes it a function of its audio and the settings only (a batch pads its
# items to its longest, so what else shares a batch would change them): a second replay repeats the first.
REPLAY_MAX_BATCH = 1


class ReplaySettingsError(ValueError):
    """A ``--set``, ``--engine`` or ``--model`` a replay cannot take; the message says why."""


@dataclass(frozen=True)
class ReplaySetup:
    settings: Settings  # what the replay transcribes with
    overrides: dict[str, object]  # the --set settings, typed: they name the run
    engine: str


def parse_sets(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` items (a later KEY wins). Raises ReplaySettingsError for an item without ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ReplaySettingsError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip().lower()] = value.strip()
    return out


def replay_setup(base: Settings, sets: Mapping[str, str], engine: str | None = None, model_dir: str | None = None,
                 threads: int | None = None, lanes: int | None = None) -> ReplaySetup:  # fmt: skip
    """The settings a replay runs with: ``base`` (the environment's) with the ``--set`` overrides, the
    engine, model, threads and lanes given, and one utterance per decode. Raises ReplaySettingsError for
    an engine other than Whisper, a setting a replay does not take, or a value that does not validate."""
    engine = engine or base.stt_engine
    if engine not in ENGINES:
        raise ReplaySettingsError(
            f"--engine {engine}: a replay transcribes with whisper only (a cloud engine's sessions run at "
            "the pace of speech and answer differently each time, so a second replay would not repeat the first)"
        )  # fmt: skip
    for key in sets:
        if key in REFUSED:
            raise ReplaySettingsError(f"--set {key}: {REFUSED[key]}")
        if key not in TRANSCRIPT_SETTINGS:
            what = "not an STT or merger setting" if key in Settings.model_fields else "no such setting"
            raise ReplaySettingsError(f"--set {key}: {what}; a replay takes {', '.join(TRANSCRIPT_SETTINGS)}")
    for option, value in (("--threads", threads), ("--lanes", lanes)):
        if value is not None and value < 1:
            raise ReplaySettingsError(f"{option} {value}: at least 1")
    values: dict[str, object] = {**sets, "stt_engine": engine, "stt_max_batch": REPLAY_MAX_BATCH}
    if model_dir is not None:
        values["whisper_model_dir"] = model_dir
    if threads is not None:
        values["whisper_threads"] = threads
    if lanes is not None:
        values["stt_decode_lanes"] = lanes
    try:
        settings = Settings.model_validate({**base.model_dump(exclude_unset=True), **values})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        raise ReplaySettingsError(f"--set: {problems}") from None
    overrides = {key: _json_value(getattr(settings, key)) for key in sorted(sets)}
    return ReplaySetup(settings, overrides, engine)


def _json_value(value: object) -> object:
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)


def run_of(setup: ReplaySetup, model: str) -> str:
    """The run the replay writes: named by its engine, its model (the engine's label of the model
    directory) and its overrides."""
    return replay_run(setup.engine, model, setup.overrides)
