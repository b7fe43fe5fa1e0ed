"""CPU cost of the STT worker's segmenter per second of audio, per VAD variant of ``bench.real_speech``.

Each variant segments the three real recordings (``python -m bench.real_speech --fetch`` downloads them)
in 100 ms frames, ``--repeat`` times; the least CPU time of the repeats is reported (the machine is
shared), for the model's calls (``vad``) and for the whole segmenter (``segmenter``), in milliseconds of
CPU per second of audio. One stream costs that much of one core; N streams, N times that.
"""

from __future__ import annotations

import argparse
import sys

from bench.real_speech import DATA, TRACKS, VAD_VARIANTS, utterances


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vad_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5, help="runs per variant, the least CPU kept (default 5)")
    args = parser.parse_args(argv)
    if not all((DATA / f"{t}.wav").exists() for t in TRACKS):
        print(f"no recordings in {DATA}: run python -m bench.real_speech --fetch first", file=sys.stderr)
        return 2
    from faster_whisper import decode_audio

    audio = [decode_audio(str(DATA / f"{t}.wav"), sampling_rate=16000) for t in TRACKS]
    seconds = sum(len(a) for a in audio) / 16000
    for variant in VAD_VARIANTS:
        least = {"vad": float("inf"), "segmenter": float("inf")}
        for _ in range(args.repeat):
            total = {"vad": 0.0, "segmenter": 0.0}
            for track in audio:
                for part, cpu_s in utterances(track, variant)[1].items():
                    total[part] += cpu_s
            least = {part: min(least[part], total[part]) for part in least}
        print(f"{variant:<9} " + ", ".join(f"{part} {1000 * cpu_s / seconds:.2f} ms" for part, cpu_s in least.items())
              + " of CPU per second of audio", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
