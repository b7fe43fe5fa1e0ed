"""Debian's chromium as a meeting participant, for the browser tests and ``palaver bench browser``: the flags
a sandboxed machine needs, and a participant's fake microphone from a WAV file. ``playwright install``
cannot download browsers here; the system's chromium is used (``PALAVER_CHROMIUM`` names another)."""

from __future__ import annotations

import os
import shutil
import wave
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("PALAVER_CHROMIUM", "/usr/bin/chromium")

# No background network (this machine has none; chromium would retry it many times at once), no first-run
# UI, the page's microphone from a file with its permission granted up front.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]  # fmt: skip


def chromium_available() -> bool:
    return shutil.which(CHROMIUM) is not None or Path(CHROMIUM).exists()


def microphone_flag(wav: Path) -> str:
    """Play ``wav`` once as the microphone, from the moment the page opens it."""
    return f"--use-file-for-fake-audio-capture={wav}%noloop"


def write_wav(path: Path, pcm: np.ndarray, sample_rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    return path
