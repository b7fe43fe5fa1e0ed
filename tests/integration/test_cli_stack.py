"""The `palaver` command as a user runs it: broker management, `up` and its clean shutdown, `demo`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from palaver.demo.script import DEMO_MEETING
from tests.integration.infra import free_port

pytestmark = pytest.mark.integration


def palaver(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stack", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or os.environ.copy())  # fmt: skip


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALAVER_")}
    env.update({"PALAVER_DATA_DIR": str(tmp_path), "PALAVER_KAFKA_PORT": str(free_port()), **extra})
    return env


def test_broker_start_status_stop(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    started = palaver("broker", "start", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert "broker started" in started.stdout and str(tmp_path / "kafka" / "broker.log") in started.stdout
        status = palaver("broker", "status", env=env)
        assert status.returncode == 0 and "broker running" in status.stdout
        again = palaver("broker", "start", env=env)
        assert "already running" in again.stdout
        assert (tmp_path / "kafka" / "broker.log").stat().st_size > 0, "the broker's own log is written"
    finally:
        stopped = palaver("broker", "stop", env=env)
    assert stopped.returncode == 0 and "broker stopped" in stopped.stdout
    status = palaver("broker", "status", env=env)
    assert status.returncode == 3 and "not running" in status.stdout


def test_broker_start_reports_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = palaver("broker", "start", env=embedded_env(tmp_path, PALAVER_KAFKA_PORT=str(port)))
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is taken" in result.stderr


def test_broker_start_reports_missing_java(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = embedded_env(tmp_path, PATH=str(bin_dir))
    result = palaver("broker", "start", env=env)
    assert result.returncode == 2
    assert "Java 17 or newer is required" in result.stderr and "`java` is not on PATH" in result.stderr


def test_up_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = embedded_env(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "stack", "up", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Palaver is up" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}" in output, output
        for name in ("web", "stt", "merger"):
            assert str(tmp_path / "logs" / f"{name}.log") in output
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["status"] == "ok"
        assert "/v1/meetings/{meeting_id}/dialogues" in httpx.get(f"http://127.0.0.1:{port}/openapi.json").text
        stt_metrics = _get_when_up(f"http://127.0.0.1:{port + 1}/metrics")
        assert "palaver_stt_active_streams" in stt_metrics
        merger_metrics = _get_when_up(f"http://127.0.0.1:{port + 2}/metrics")
        assert "palaver_merger_dialogue_updates_total" in merger_metrics
        children = dict(re.findall(r"^ +(\w+) +\([^)]*\) pid (\d+), log ", output, re.M))
        assert sorted(children) == ["merger", "stt", "web"], output
        child_pids = [int(pid) for pid in children.values()]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for pid in child_pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert palaver("broker", "status", env=env).returncode == 3, "up stops the broker it started"


def test_demo_prints_the_meeting_in_order(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    result = palaver("demo", "--speed", "4", "--port", str(free_port()), env=env, timeout=420)
    assert result.returncode == 0, result.stdout + result.stderr
    transcript = result.stdout.split("Merged transcript:")[1]
    speakers = re.findall(r"\]\s+(\w+): ", transcript)
    assert speakers == [line.speaker_id for line in DEMO_MEETING]
    wer = float(re.search(r"word error rate against the script: ([\d.]+)%", result.stdout).group(1))  # type: ignore[union-attr]
    assert wer <= 10.0
    time.sleep(0.5)
    assert palaver("broker", "status", env=env).returncode == 3


def _get_when_up(url: str, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
