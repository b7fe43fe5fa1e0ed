"""What every benchmark needs: a broker (the embedded one unless PALAVER_KAFKA_BOOTSTRAP is set), fresh
topics, Palaver services as real processes, a progress line, and JSON + PNG output under bench/out/."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from palaver.settings import Settings

OUT = Path(__file__).resolve().parent / "out"


def free_port() -> int:
    """A free port whose next port is free too (the embedded broker's controller takes port + 1).

    Chosen below the kernel's ephemeral range, which outgoing connections draw from: a port picked
    there can be taken by any client socket between the check and the broker's start."""
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low - 1)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


@contextmanager
def bench_settings(name: str) -> Iterator[Settings]:
    """Settings on fresh topics; starts (and stops) an embedded broker unless one is configured."""
    from palaver.broker import embedded

    with tempfile.TemporaryDirectory(prefix=f"palaver-bench-{name}-") as tmp:
        root = Path(tmp)
        bootstrap = os.environ.get("PALAVER_KAFKA_BOOTSTRAP")
        port = free_port()
        if not bootstrap:
            embedded.start(root / "kafka", port)
        try:
            yield Settings(
                data_dir=root,
                kafka_bootstrap=bootstrap or f"127.0.0.1:{port}",
                kafka_replication_factor=1 if not bootstrap else None,
                topic_namespace=f"bench-{name}-{uuid.uuid4().hex[:8]}",
                clickhouse_url=f"chdb://{root / 'clickhouse'}",
                api_port=free_port(),
            )
        finally:
            if not bootstrap:
                embedded.stop(root / "kafka")


def service(settings: Settings, *services: str, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PALAVER_DATA_DIR": str(settings.data_dir),
        "PALAVER_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "PALAVER_KAFKA_REPLICATION_FACTOR": str(settings.replication_factor),
        "PALAVER_TOPIC_NAMESPACE": settings.topic_namespace,
        "PALAVER_CLICKHOUSE_URL": settings.clickhouse_dsn,
        # A sweep signs up every speaker of every phase from this one address.
        "PALAVER_REGISTRATIONS_PER_ADDRESS_PER_HOUR": os.environ.get("PALAVER_REGISTRATIONS_PER_ADDRESS_PER_HOUR", "1000"),
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-m", "stack", "run", *services, "--port", str(settings.api_port)]
    return subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)


PIPELINE = {"web": ("api", "ingest", "store"), "stt": ("stt",), "merger": ("merger",)}


def start_pipeline(settings: Settings, bench: str) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    """The whole pipeline as three processes (web, one STT worker, merger), each logging to a fresh
    ``bench/out/logs/<bench>-bench-<name>.log``; ``wait_for_pipeline`` waits until they serve."""
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    started = {}
    for name, services in PIPELINE.items():
        log = OUT / "logs" / f"{bench}-bench-{name}.log"
        log.unlink(missing_ok=True)
        started[name] = (service(settings, *services, log=log), log)
    return started


def wait_for_pipeline(started: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    wait_for_log(started["stt"][1], "consuming")
    wait_for_log(started["merger"][1], "merger ready")


def stop_pipeline(started: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    for process, _ in started.values():
        process.terminate()
    for process, _ in started.values():
        process.wait(timeout=30)


def wait_for_log(log: Path, needle: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{log} never said {needle!r}")


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int, quiet: bool = False):
        self.label, self.total, self.done, self.quiet = label, max(total, 1), 0, quiet
        self._last = 0.0

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        now = time.monotonic()
        if self.quiet:
            return
        if now - self._last < 0.2 and done < self.total:
            return
        self._last = now
        filled = int(30 * min(done, self.total) / self.total)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} {note}   ")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def write_results(name: str, results: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
