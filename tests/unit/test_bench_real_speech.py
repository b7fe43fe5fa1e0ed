"""The real-speech bench's sources: where their files are kept, and how a track is assembled from its parts."""

import wave
from pathlib import Path

import numpy as np

from bench.real_speech import SOURCES, Track, clean, load_track, track_files


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.astype(np.int16).tobytes())


def test_every_part_of_every_source_is_kept_under_its_own_file_name() -> None:
    files = [f for _, tracks in SOURCES.values() for t in tracks for pair in track_files(t) for f in pair]
    assert len(files) == len(set(files))
    assert all(f.suffix in (".wav", ".flac", ".lab", ".txt") for f in files)


def test_a_track_plays_its_parts_in_order_and_joins_their_transcripts(tmp_path: Path) -> None:
    track = Track("two", "pkg==1", (("a/one.wav", "a/one.txt"), ("b/two.wav", "b/two.lab")))
    _write_wav(tmp_path / "one.wav", np.full(1600, 1000))
    _write_wav(tmp_path / "two.wav", np.full(3200, -2000))
    (tmp_path / "one.txt").write_text("Hello [noise] um there\n")
    (tmp_path / "two.lab").write_text("GENERAL Kenobi")

    audio, reference = load_track(track, tmp_path)

    assert len(audio) == 4800
    assert np.all(audio[:1600] > 0) and np.all(audio[1600:] < 0)
    assert reference == "hello there general kenobi" == clean("hello there general kenobi")
