"""Where Whisper decodes: checked once at start-up, so that a wrong device or compute type stops the worker
with one clear line instead of failing deep in its first decode.

CTranslate2's wheel has the CUDA runtime built in but loads CUDA 12's cuBLAS (``libcublas.so.12``) only when
a model first runs on the GPU. ``pip install -e ".[gpu]"`` installs it as the ``nvidia-cublas-cu12`` wheel,
whose folder the system's loader does not search: ``load_cublas`` loads it from there (globally, so that
CTranslate2's later load by name finds it), unless the system has one already.
"""

from __future__ import annotations

import ctypes
import importlib.util
from pathlib import Path

CUBLAS = "libcublas.so.12"
GPU_INSTALL_HINT = 'pip install -e ".[gpu]" (CUDA 12 cuBLAS)'


class DeviceError(RuntimeError):
    """The configured device or compute type cannot run here; the message says what to install or choose."""


def _wheel_library(name: str) -> Path | None:
    """``name`` inside the nvidia-cublas-cu12 wheel's folder, if that wheel is installed."""
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "cublas" / "lib" / name
        if path.is_file():
            return path
    return None


def load_cublas() -> bool:
    """Make ``libcublas.so.12`` loadable by name for CTranslate2: True if the system's loader finds it or
    the nvidia-cublas-cu12 wheel's copy was loaded."""
    try:
        ctypes.CDLL(CUBLAS, mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        pass
    library = _wheel_library(CUBLAS)
    if library is None:
        return False
    lt = library.with_name("libcublasLt.so.12")  # cuBLAS's own dependency, beside it in the wheel
    if lt.is_file():
        ctypes.CDLL(str(lt), mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    return True


# CU_CTX_SCHED_* flags of a CUDA context: how a CPU thread waits for the GPU.
GPU_WAIT_FLAGS = {"spin": 0x1, "block": 0x4}


def set_gpu_wait(wait: str, device_index: int = 0) -> bool:
    """Set how this process's threads wait for the GPU, before anything uses it: ``"block"`` sleeps until the
    GPU is done, ``"spin"`` busy-waits. CUDA's default spins while a process has fewer contexts than the
    machine has cores: every decode lane waiting on the GPU then holds a whole core, and several STT worker
    processes on one GPU spent 13 of 16 cores that way at any load (bench/README.md, "On a GPU"). Sets the
    primary context's flags through the driver API, which every CUDA runtime in the process (CTranslate2's,
    torch's) shares. Returns False where there is no CUDA driver or it refused."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    device = ctypes.c_int()
    if driver.cuInit(0) != 0 or driver.cuDeviceGet(ctypes.byref(device), device_index) != 0:
        return False
    set_flags = getattr(driver, "cuDevicePrimaryCtxSetFlags_v2", None) or driver.cuDevicePrimaryCtxSetFlags
    return set_flags(device, GPU_WAIT_FLAGS[wait]) == 0


def check_device(device: str, compute_type: str) -> None:
    """Raise ``DeviceError`` (one line: what is wrong and what to do) unless Whisper can run on ``device``
    ("cpu" or "cuda") with ``compute_type`` here."""
    import ctranslate2

    if device == "cuda":
        if ctranslate2.get_cuda_device_count() == 0:
            raise DeviceError(
                "PALAVER_WHISPER_DEVICE=cuda, but no CUDA device is visible (no NVIDIA GPU or driver here): "
                "install the NVIDIA driver, or set PALAVER_WHISPER_DEVICE=cpu"
            )
        if not load_cublas():
            raise DeviceError(f"PALAVER_WHISPER_DEVICE=cuda needs CUDA 12's cuBLAS ({CUBLAS}): {GPU_INSTALL_HINT}")
    elif device != "cpu":
        raise DeviceError(f"PALAVER_WHISPER_DEVICE={device!r}: choose cpu or cuda")
    supported = sorted(ctranslate2.get_supported_compute_types(device))
    if compute_type not in supported:
        raise DeviceError(
            f"PALAVER_WHISPER_COMPUTE_TYPE={compute_type} is not supported on this {device}: "
            f"choose one of {', '.join(supported)}"
        )
