"""Silero VAD (the ONNX file that ships inside faster-whisper), run as it is meant to: a sequence of 32 ms
windows with its recurrent state carried from one window to the next.

The model takes a batch of windows as one sequence in time (its LSTM runs along the batch) and returns
the state after the last one, so a stream's windows can be scored a few at a time, as its audio arrives,
with exactly the probabilities one call over the whole stream would give. Scored alone, with a fresh
state, a window of real speech often scores below 0.5: most of a quiet speaker's words are lost.
Where the state restarts (so that a worker resuming a stream scores exactly like the one before it) is the
segmenter's business (``stt_workers/segmenter.py``).
"""

from __future__ import annotations

import os

import numpy as np

WINDOW = 512
CONTEXT = 64

SileroState = tuple[np.ndarray, np.ndarray]  # the LSTM's (h, c), each (1, 1, 128)


class SileroScorer:
    """One ONNX session, shared by every stream of a worker; each stream keeps its own state."""

    def __init__(self) -> None:
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
        self._session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)

    def __call__(self, windows: np.ndarray, state: SileroState | None) -> tuple[np.ndarray, SileroState | None]:
        """``windows``: float32 (n, CONTEXT + WINDOW), consecutive in time, each with the 64 samples before
        it. Scored from ``state`` (None: a fresh one). Returns n speech probabilities and the state after
        the last window (``state`` itself when n is 0)."""
        if len(windows) == 0:
            return np.zeros(0, np.float32), state
        h, c = state if state is not None else (np.zeros((1, 1, 128), np.float32),) * 2
        out, h, c = self._session.run(None, {"input": windows.astype(np.float32, copy=False), "h": h, "c": c})
        return np.asarray(out, np.float32).reshape(-1), (h, c)
