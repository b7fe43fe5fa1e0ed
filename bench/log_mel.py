"""Log-mel benchmark: ``stt_workers.log_mel.log_mel`` on a whole batch against faster-whisper's
``FeatureExtractor`` called clip by clip (as ``BatchedWhisper`` did before), on batches of 8 and 128
clips of 5 s of noise-like audio, each padded as ``BatchedWhisper`` pads it (to 6 s, 600 frames). The
figure is the median over ``--reps`` of the time for the batch; the largest difference of the two
results is printed beside it."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.harness import write_results

SAMPLE_RATE = 16000
CLIP_S = 5.0
FRAMES = 600


def median_ms(work: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(reps: int, batches: tuple[int, ...]) -> dict[str, Any]:
    from faster_whisper.feature_extractor import FeatureExtractor

    from stt_workers.log_mel import log_mel

    extractor = FeatureExtractor()
    rng = np.random.default_rng(0)
    rows = []
    for size in batches:
        audio = np.zeros((size, FRAMES * 160), np.float32)
        audio[:, : int(CLIP_S * SAMPLE_RATE)] = 0.1 * rng.standard_normal((size, int(CLIP_S * SAMPLE_RATE)))

        def per_clip(audio: np.ndarray = audio) -> np.ndarray:
            return np.stack([extractor(row)[:, :FRAMES] for row in audio])

        difference = float(np.abs(per_clip() - log_mel(audio, FRAMES)).max())
        clip_ms = median_ms(per_clip, reps)
        batch_ms = median_ms(lambda audio=audio: log_mel(audio, FRAMES), reps)
        rows.append({"batch": size, "per_clip_ms": round(clip_ms, 1), "batched_ms": round(batch_ms, 1),
                     "speedup": round(clip_ms / batch_ms, 2), "max_abs_difference": difference})  # fmt: skip
    return {"clip_s": CLIP_S, "frames": FRAMES, "reps": reps, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    results = run(args.reps, (8, 128))
    print(f"{'batch':>5} {'per clip ms':>11} {'batched ms':>10} {'speed-up':>8} {'max |diff|':>10}")
    for r in results["rows"]:
        print(f"{r['batch']:>5} {r['per_clip_ms']:>11.1f} {r['batched_ms']:>10.1f} {r['speedup']:>7.2f}x "
              f"{r['max_abs_difference']:>10.2e}")  # fmt: skip
    print(f"wrote {write_results('log_mel', results)}")


if __name__ == "__main__":
    main()
