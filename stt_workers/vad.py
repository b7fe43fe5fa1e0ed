"""Silero VAD (the ONNX file that ships inside faster-whisper), scoring 32 ms windows independently.

Each 512-sample window is scored with the 64 samples before it and a fresh recurrent state, so a window's
probability depends only on the audio around it: re-reading a stream from an earlier offset after a crash
finds the same speech boundaries, hence the same utterance ids.
"""

from __future__ import annotations

import os

import numpy as np

WINDOW = 512
CONTEXT = 64


class SileroScorer:
    def __init__(self) -> None:
        import onnxruntime
        from faster_whisper.utils import get_assets_path

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
        self._session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """``windows``: float32 (n, CONTEXT + WINDOW). Returns n speech probabilities."""
        if len(windows) == 0:
            return np.zeros(0, np.float32)
        state = np.zeros((1, 1, 128), np.float32)
        out, _, _ = self._session.run(None, {"input": windows.astype(np.float32), "h": state, "c": state})
        return np.asarray(out, np.float32).reshape(-1)
