"""A faust agent that does nothing but take the transcripts topic in batches, as the merger does: the
ceiling any faust-based merger can reach on this machine. Prints ``RATE <events/s>`` once it has seen
``--events`` events. Run by bench/merger.py in its own process."""

from __future__ import annotations

import argparse
import sys
import time

import faust


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--data-dir", required=True)
    args, rest = parser.parse_known_args()
    app = faust.App(args.app_id, broker=f"kafka://{args.bootstrap}", store="memory://", web_enabled=False,
                    datadir=args.data_dir,
                    topic_partitions=6, topic_replication_factor=1, consumer_auto_offset_reset="earliest")  # fmt: skip
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    seen = {"n": 0, "t0": 0.0}

    @app.agent(topic)
    async def noop(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(500, within=0.01):  # type: ignore[attr-defined]
            if not seen["n"]:
                seen["t0"] = time.perf_counter()
            seen["n"] += len(batch)
            if seen["n"] >= args.events:
                print(f"RATE {seen['n'] / (time.perf_counter() - seen['t0']):.1f}", file=sys.stderr, flush=True)

    sys.argv = [sys.argv[0], "worker", "-l", "warn", *rest]
    app.main()


if __name__ == "__main__":
    main()
