"""The Whisper device check at start-up (this machine has no CUDA device), and the GPU's decode defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from palaver.settings import GPU_DEFAULTS, Settings
from stack.services import UsageError, check_engine
from stt_workers.whisper_device import DeviceError, check_device


def test_cpu_with_its_default_compute_type_passes() -> None:
    check_device("cpu", "int8")


def test_cuda_without_a_device_says_so_in_one_line() -> None:
    ctranslate2 = pytest.importorskip("ctranslate2")
    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(DeviceError) as raised:
        check_device("cuda", "float16")
    message = str(raised.value)
    assert "\n" not in message and "no CUDA device" in message and "PALAVER_WHISPER_DEVICE=cpu" in message


def test_a_compute_type_the_device_lacks_names_the_ones_it_has() -> None:
    with pytest.raises(DeviceError, match=r"float16 is not supported on this cpu: choose one of .*int8"):
        check_device("cpu", "float16")


def test_an_stt_process_checks_the_device_before_it_starts() -> None:
    with pytest.raises(UsageError, match="PALAVER_WHISPER_COMPUTE_TYPE=float16"):
        check_engine(Settings(whisper_compute_type="float16"), ["stt"])
    check_engine(Settings(whisper_compute_type="float16"), ["api"])  # only an STT worker decodes


def test_gpu_defaults_apply_on_cuda_unless_given() -> None:
    gpu = Settings(whisper_device="cuda", stt_max_batch=32)
    assert gpu.stt_max_batch == 32
    assert gpu.whisper_compute_type == GPU_DEFAULTS["whisper_compute_type"]
    assert gpu.stt_decode_lanes == GPU_DEFAULTS["stt_decode_lanes"]
    assert gpu.stt_partial_batch_audio_s == GPU_DEFAULTS["stt_partial_batch_audio_s"]
    cpu = Settings()
    assert (cpu.whisper_compute_type, cpu.stt_max_batch) == ("int8", 8)


def test_gpu_defaults_apply_to_the_environments_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALAVER_WHISPER_DEVICE", "cuda")
    monkeypatch.setenv("PALAVER_STT_DECODE_LANES", "3")
    settings = Settings()
    assert settings.stt_decode_lanes == 3 and settings.stt_max_batch == GPU_DEFAULTS["stt_max_batch"]


def test_palaver_run_stt_on_a_missing_gpu_exits_with_one_line(tmp_path: Path) -> None:
    """What a user sees: ``palaver run stt`` with PALAVER_WHISPER_DEVICE=cuda where there is no GPU stops at
    once (before it looks for a broker) with exit status 2 and one line naming the fix."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("this machine has a CUDA device")
    env = {**os.environ, "PALAVER_WHISPER_DEVICE": "cuda", "PALAVER_DATA_DIR": str(tmp_path),
           "PALAVER_KAFKA_BOOTSTRAP": "127.0.0.1:9"}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "stack", "run", "stt"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "PALAVER_WHISPER_DEVICE=cpu" in lines[0]
