"""Numpy's OpenBLAS runs on one thread in Palaver's processes: its own thread pool would busy-wait beside
the threads the settings budget (the STT worker's decode lanes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import os, palaver, numpy as np
a = np.ones((256, 256)); a @ a
print(len(os.listdir('/proc/self/task')))
"""


def _threads_after_matmul(env: dict[str, str]) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_importing_palaver_first_keeps_blas_on_one_thread() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert _threads_after_matmul(env) == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS uses at most one thread per core")
def test_an_explicit_setting_wins() -> None:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    assert _threads_after_matmul(env) == 2
