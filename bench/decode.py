"""Decode benchmark: how many talking speakers one machine's STT holds, on a CPU or a GPU, with no broker.

Each trial runs the real STT worker (``SttWorker`` on the consumer runner, ``LocalTranscriber``: Silero
VAD, the decode scheduler, batched Whisper) in ``--processes`` processes over the in-memory broker
(bench/decode_load.py), fed N streams of speech at real time between them, and reports over all streams:

- partial lag p95: each ``transcript.partial``'s append time minus when the audio up to its end was sent;
- end of speech to final p95: each ``transcript.final``'s append time minus when the frame holding the
  utterance's end was sent (it includes the VAD's 500 ms wait for the silence that ends an utterance);
- stream-updates/s (clips decoded), partials dropped as stale, CPU cores used, GPU use (nvidia-smi).

A trial holds when both p95 are within ``--target-s`` (1.0 s) and the worker finished within a few
seconds of the streams' end (no backlog). ``--find-max`` doubles N from ``--streams`` while trials hold,
then bisects to within 5%. ``--decode-only`` instead times ``BatchedWhisper.decode`` alone on 4.5 s clips
of speech (each fills a 5 s window; partials, no word timings; the log-mel included) at several batch sizes
and lanes, then the other decode mode and the log-mel on the CPU side by side.

Speech: hibari tracks from bench/speech.py, written once to ``--speech`` (an .npz) so that a machine without
hibari (a GPU server) can take the file along. Writes bench/out/decode.json and decode.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.decode_load import SAMPLE_RATE, Share, load_tracks, run_share
from bench.harness import OUT, write_results

SPEECH = OUT / "cache" / "decode-speech.npz"
DRAIN_LIMIT_S = 5.0  # a trial whose worker needs longer than this after the streams end fell behind


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), p))


def write_speech(path: Path, tracks: int, seconds: float) -> Path:
    """``tracks`` hibari speech tracks of about ``seconds`` each (bench/speech.py), as int16 arrays."""
    from bench.speech import build_tracks

    built = build_tracks(tracks, seconds)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{f"pcm{i}": t.pcm for i, t in enumerate(built)})
    return path


class GpuSampler:
    """GPU use while a trial runs, from ``nvidia-smi`` every 0.5 s (nothing where there is none)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (utilization %, memory MiB)
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "500"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                util, memory = (float(x) for x in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((util, memory))

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        util = [u for u, _ in self.samples]
        return {"util_mean": round(float(np.mean(util)), 1), "util_p95": round(percentile(util, 95), 1),
                "memory_mib_max": max(m for _, m in self.samples)}  # fmt: skip


def trial(streams: int, args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    """N streams over ``args.processes`` worker processes at once; merged figures."""
    processes = min(args.processes, streams)
    shares = [
        Share(tuple(range(p, streams, processes)), args.seconds, args.warmup, settings, str(args.speech))
        for p in range(processes)
    ]
    print(f"  {streams:>5} streams: streaming {args.seconds:.0f} s over {processes} processes ...", end="\r", flush=True)
    started = time.time()
    with GpuSampler() as gpu, ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(run_share, shares))
    partial = [lag for part in parts for lag in part["partial_lags"]]
    final = [lag for part in parts for lag in part["final_lags"]]
    measured_s = max(args.seconds - args.warmup, 1e-9)
    result = {
        "streams": streams,
        "processes": processes,
        "partial_p50_s": round(percentile(partial, 50), 3),
        "partial_p95_s": round(percentile(partial, 95), 3),
        "final_p50_s": round(percentile(final, 50), 3),
        "final_p95_s": round(percentile(final, 95), 3),
        "partials": len(partial),
        "finals": len(final),
        "updates_per_s": round(sum(p["decoded_clips"] for p in parts) / max(p["wall_s"] for p in parts), 1),
        "dropped_partials": int(sum(p["dropped_partials"] for p in parts)),
        "cpu_cores": round(sum(p["cpu_s"] for p in parts) / max(p["wall_s"] for p in parts), 2),
        "drain_s": round(max(p["drain_s"] for p in parts), 2),
        "partials_per_stream_s": round(len(partial) / streams / measured_s, 2),
        "wall_s": round(time.time() - started, 1),
        "gpu": gpu.summary(),
    }
    result["holds"] = bool(
        partial and final and result["partial_p95_s"] <= args.target_s and result["final_p95_s"] <= args.target_s
        and result["drain_s"] <= DRAIN_LIMIT_S
    )  # fmt: skip
    return result


def find_max(args: argparse.Namespace, settings: dict[str, Any], report: Callable[[dict[str, Any]], None]) -> None:
    """Double N from ``args.streams`` while trials hold, then bisect between the last that held and the
    first that did not, to within 5% (or one stream); ``report`` gets each trial."""

    def run(n: int) -> bool:
        result = trial(n, args, settings)
        report(result)
        return result["holds"]

    held, failed = 0, None
    n = args.streams
    while failed is None and n <= args.limit:
        if run(n):
            held, n = n, n * 2
        else:
            failed = n
    if failed is None:
        return
    while failed - held > max(1, held // 20):
        middle = (held + failed) // 2
        if run(middle):
            held = middle
        else:
            failed = middle


def partial_decoder(engine: Any) -> Callable[[list[np.ndarray]], object]:
    """A batch decoded as partials (no word timings)."""
    return lambda batch: engine.decode(batch, "en", [False] * len(batch))


def decode_only(args: argparse.Namespace, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """``BatchedWhisper.decode`` alone on 4.5 s clips of speech (partials: no word timings), log-mel included:
    stream-updates/s at each batch size with each number of calls in flight (lanes), in the settings'
    decode mode; then, at the most lanes and a batch of 128 (or the largest below), the other decode mode
    and, on a GPU, the log-mel on the CPU, side by side."""
    from palaver.settings import Settings
    from stt_workers.batched_whisper import DECODE_MODES, BatchedWhisper

    base = Settings(**settings)
    if base.whisper_device == "cuda":
        from stt_workers.whisper_device import set_gpu_wait

        set_gpu_wait(base.whisper_gpu_wait)
    tracks = [t.astype(np.float32) / 32768 for t in load_tracks(str(args.speech))]
    clip = 5 * SAMPLE_RATE - SAMPLE_RATE // 2  # fills a 5 s window with the decode's 0.5 s of padding
    clips = [t[i : i + clip] for t in tracks for i in range(0, len(t) - clip, SAMPLE_RATE)]
    lanes_most = max(args.lanes_sweep)
    batch_cmp = max((b for b in args.batch_sweep if b <= 128), default=min(args.batch_sweep))
    configs = [(base.whisper_decode, True, lanes, batch) for lanes in args.lanes_sweep for batch in args.batch_sweep]
    configs += [(mode, True, lanes_most, batch_cmp) for mode in DECODE_MODES if mode != base.whisper_decode]
    if base.whisper_device == "cuda":
        configs.append((base.whisper_decode, False, lanes_most, batch_cmp))
    rows: list[dict[str, Any]] = []
    engines: dict[tuple[str, bool, int], BatchedWhisper] = {}
    for mode, mel_on_gpu, lanes, batch in configs:
        key = (mode, mel_on_gpu, lanes)
        if key not in engines:
            engines.clear()  # one model at a time
            engines[key] = BatchedWhisper(base.model_dir, base.whisper_compute_type, base.whisper_device,
                                          base.whisper_threads, lanes, decode_mode=mode, mel_on_gpu=mel_on_gpu)  # fmt: skip
            engines[key].decode(clips[:4], "en", [False] * 4)
        engine = engines[key]
        batches = [[clips[(k * batch + j) % len(clips)] for j in range(batch)] for k in range(lanes * 3)]
        with ThreadPoolExecutor(lanes) as pool:
            started = time.perf_counter()
            list(pool.map(partial_decoder(engine), batches))
            elapsed = time.perf_counter() - started
        mel = "gpu" if engine.mel_on_gpu else "cpu"
        rows.append({"decode": mode, "mel": mel, "lanes": lanes, "batch": batch,
                     "updates_per_s": round(len(batches) * batch / elapsed, 1),
                     "seconds_per_call": round(elapsed * lanes / len(batches), 4)})  # fmt: skip
        print(f"  decode-only {mode:<10} mel {mel} lanes {lanes:>2} batch {batch:>4}: "
              f"{rows[-1]['updates_per_s']:>8.1f} updates/s", flush=True)  # fmt: skip
    return rows


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = sorted(results["trials"], key=lambda t: t["streams"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    n = [t["streams"] for t in trials]
    ax.plot(n, [t["partial_p95_s"] for t in trials], "o-", label="partial lag p95")
    ax.plot(n, [t["final_p95_s"] for t in trials], "s-", label="end of speech → final p95")
    ax.axhline(results["target_s"], color="grey", linestyle="--", label=f"target {results['target_s']} s")
    for t in trials:
        ax.annotate("held" if t["holds"] else "no", (t["streams"], t["partial_p95_s"]), fontsize=7)
    ax.set_xlabel("talking streams")
    ax.set_ylabel("seconds")
    ax.set_yscale("log")
    ax.set_title(f"STT on {results['device']}: most streams held {results['max_held']}\n{results['settings_used']}", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palaver bench decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--streams", type=int, default=None, help="talking streams (default: 8 on cpu, 250 on cuda)")
    parser.add_argument("--find-max", action="store_true", help="search the most streams that hold the target")
    parser.add_argument("--limit", type=int, default=4096, help="--find-max tries no more streams than this")
    parser.add_argument("--processes", type=int, default=None,
                        help="STT worker processes sharing the machine (default: 1 on cpu, 4 on cuda)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds each trial streams (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="first seconds of a trial not counted")
    parser.add_argument("--target-s", type=float, default=1.0, help="p95 a trial must hold (default 1.0 s)")
    parser.add_argument("--max-batch", type=int, default=None, help="PALAVER_STT_MAX_BATCH (default: the device's)")
    parser.add_argument("--lanes", type=int, default=None, help="PALAVER_STT_DECODE_LANES (default: the device's)")
    parser.add_argument("--decode", choices=("aligned", "timestamps"), default=None,
                        help="PALAVER_WHISPER_DECODE (default: the device's)")  # fmt: skip
    parser.add_argument("--gpu-wait", choices=("block", "spin"), default=None, help="PALAVER_WHISPER_GPU_WAIT")
    parser.add_argument("--decode-only", action="store_true", help="time BatchedWhisper.decode alone instead")
    parser.add_argument("--batch-sweep", default="8,32,64,128,256", help="--decode-only batch sizes")
    parser.add_argument("--lanes-sweep", default="1,2,4", help="--decode-only lanes")
    parser.add_argument("--speech", type=Path, default=SPEECH, help=f"speech tracks .npz (default {SPEECH})")
    parser.add_argument("--write-speech", action="store_true", help="(re)write --speech from hibari and exit")
    parser.add_argument("--speech-tracks", type=int, default=4, help="tracks --write-speech writes (default 4)")
    parser.add_argument("--speech-seconds", type=float, default=45, help="seconds of speech a track (default 45)")
    parser.add_argument("--plot", type=Path, default=None, help="only draw the PNG of a JSON this bench wrote")
    parser.add_argument("--out", default="decode", help="name of the JSON and PNG in bench/out (default decode)")
    args = parser.parse_args(argv)
    if args.plot is not None:
        plot(json.loads(args.plot.read_text()), args.plot.with_suffix(".png"))
        print(f"wrote {args.plot.with_suffix('.png')}")
        return 0
    args.batch_sweep = [int(x) for x in args.batch_sweep.split(",")]
    args.lanes_sweep = [int(x) for x in args.lanes_sweep.split(",")]
    args.streams = args.streams or (8 if args.device == "cpu" else 250)
    args.processes = args.processes or (1 if args.device == "cpu" else 4)
    if args.write_speech or not args.speech.exists():
        print(f"writing speech tracks to {args.speech} ...", flush=True)
        write_speech(args.speech, args.speech_tracks, args.speech_seconds)
        if args.write_speech:
            return 0
    settings: dict[str, Any] = {"whisper_device": args.device}
    if args.max_batch:
        settings["stt_max_batch"] = args.max_batch
    if args.lanes:
        settings["stt_decode_lanes"] = args.lanes
    if args.decode:
        settings["whisper_decode"] = args.decode
    if args.gpu_wait:
        settings["whisper_gpu_wait"] = args.gpu_wait
    from palaver.settings import Settings
    from stt_workers.whisper_device import DeviceError, check_device

    used = Settings(**settings)
    try:
        check_device(used.whisper_device, used.whisper_compute_type)
    except DeviceError as exc:
        print(f"palaver bench decode: {exc}", file=sys.stderr)
        return 2
    label = (f"{used.whisper_compute_type}, {used.whisper_decode}, {used.whisper_gpu_wait} wait, batch {used.stt_max_batch}, {used.stt_decode_lanes} lanes, "
             f"{args.processes} processes")  # fmt: skip
    print(f"STT decode bench on {args.device}: {label}; {os.cpu_count()} CPU cores", flush=True)
    results: dict[str, Any] = {"device": args.device, "settings_used": label, "target_s": args.target_s,
                               "seconds": args.seconds, "warmup_s": args.warmup, "cpu_count": os.cpu_count()}  # fmt: skip
    if args.decode_only:
        results["decode_only"] = decode_only(args, settings)
        path = write_results(args.out, results)
        print(f"wrote {path}")
        return 0

    path = OUT / f"{args.out}.json"
    trials: list[dict[str, Any]] = []

    def report(t: dict[str, Any]) -> None:
        """Print a trial's line and rewrite the JSON (a long search keeps what it found if stopped)."""
        gpu = t["gpu"] or {}
        print(f"  {t['streams']:>5} streams: partial p95 {t['partial_p95_s']:.2f} s, final p95 {t['final_p95_s']:.2f} s, "
              f"{t['updates_per_s']:.0f} updates/s, {t['dropped_partials']} dropped, {t['cpu_cores']:.1f} cores, "
              f"gpu {gpu.get('util_mean', '-')}%, drain {t['drain_s']:.1f} s -> {'holds' if t['holds'] else 'no'}",
              flush=True)  # fmt: skip
        trials.append(t)
        results["trials"] = trials
        results["max_held"] = max((t["streams"] for t in trials if t["holds"]), default=0)
        write_results(args.out, results)

    if args.find_max:
        find_max(args, settings, report)
    else:
        report(trial(args.streams, args, settings))
    print(f"most streams held at p95 <= {args.target_s} s: {results['max_held']}")
    try:
        plot(results, OUT / f"{args.out}.png")
    except ImportError:  # a GPU server without matplotlib: plot the JSON elsewhere (--plot)
        print("matplotlib is not installed: no plot")
    print(f"wrote {path} and {OUT / (args.out + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
