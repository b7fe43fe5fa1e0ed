"""The web app's microphone worklet (api/webapp/static/mic-worklet.js), run in Node: it turns the device's
rate into 16 kHz PCM16 frames of 100 ms, keeps speech-band tones at their level, and filters out what
16 kHz cannot hold instead of folding it back into the speech band."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import api.webapp

NODE = shutil.which("node")
WORKLET = Path(api.webapp.__file__).parent / "static" / "mic-worklet.js"
HARNESS = Path(__file__).parent / "js" / "worklet_harness.mjs"

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js")


def framed(input_rate: int, tone_hz: float, seconds: float = 1.0) -> tuple[list[int], np.ndarray]:
    out = subprocess.run([NODE, str(HARNESS), str(WORKLET), str(input_rate), str(tone_hz), str(seconds)],
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    found = json.loads(out.stdout)
    return found["frames"], np.asarray(found["samples"], np.float64) / 32768


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


@pytest.mark.parametrize("rate", [48000, 44100, 24000, 16000])
def test_frames_are_100_ms_at_16_khz_and_a_speech_tone_keeps_its_level(rate: int) -> None:
    frames, samples = framed(rate, 1000.0, seconds=1.0)
    assert set(frames) == {1600}
    assert len(frames) in (9, 10)  # one second, less the filter's look-ahead
    steady = samples[800:-800]
    assert rms(steady) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(len(steady))))
    peak_hz = np.argmax(spectrum) * 16000 / len(steady)
    assert abs(peak_hz - 1000) < 20


@pytest.mark.parametrize("rate", [48000, 44100])
def test_a_tone_above_8_khz_is_filtered_out_not_folded_back(rate: int) -> None:
    _, samples = framed(rate, 11000.0, seconds=1.0)
    # Sampled at 16 kHz without a filter it would come back at full level as a 5 kHz tone.
    assert rms(samples[800:-800]) < 0.5 / np.sqrt(2) * 10 ** (-40 / 20)  # at least 40 dB down
