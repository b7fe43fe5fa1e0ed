"""``palaver up`` supervises its children as a user runs it (real processes, the embedded broker): a killed
service or broker comes back by itself and the stack still transcribes a meeting; a child that dies at every
start stops the stack with its name and log tail; SIGTERM still stops everything, restarted children too."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from palaver.demo.client import StreamResult, stream_pcm
from palaver.demo.run import run_demo
from palaver.demo.script import DEMO_MEETING
from palaver.demo.synth import Voice, meeting_tracks
from tests.integration.infra import free_port
from tests.integration.meetings import open_meeting
from tests.integration.test_cli_stack import embedded_env, palaver

pytestmark = pytest.mark.integration

READY_NEEDLE = {"stt": "stt worker (", "merger": "merger ready"}


@dataclass
class RunningUp:
    """A ``palaver up`` process, its output collected line by line (stdout and stderr together)."""

    proc: subprocess.Popen[str]
    port: int
    data_dir: Path
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float = 180, count: int = 1) -> re.Match[str]:
        """The ``count``-th match of ``pattern`` in the output; fails if ``palaver up`` exits first."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = list(re.finditer(pattern, self.output))
            if len(found) >= count:
                return found[count - 1]
            assert self.proc.poll() is None, f"palaver up exited with {self.proc.returncode}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.output}"
            time.sleep(0.2)

    def start_pids(self) -> dict[str, int]:
        return {m[1]: int(m[2]) for m in re.finditer(r"^  (\w+) .*?pid (\d+)", self.output, re.MULTILINE)}

    def log_count(self, name: str, needle: str) -> int:
        return (self.data_dir / "logs" / f"{name}.log").read_text(errors="replace").count(needle)

    def restarts(self) -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{self.port + 3}/metrics", timeout=5).text
        return {m[1]: float(m[2]) for m in re.finditer(r'palaver_supervisor_restarts_total\{child="(\w+)"\} (\S+)', text)}


def start_up(data_dir: Path, **extra: str) -> RunningUp:
    port = free_port()
    env = embedded_env(data_dir, **extra)
    proc = subprocess.Popen([sys.executable, "-m", "stack", "up", "--port", str(port)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    up = RunningUp(proc, port, data_dir, env)

    def collect() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            up.lines.append(line)

    threading.Thread(target=collect, daemon=True).start()
    return up


def until(check: object, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text().lower()


@contextmanager
def running_up(data_dir: Path, **extra: str) -> Iterator[RunningUp]:
    """``palaver up`` until it is up; SIGTERM (then SIGKILL after 90 s) when the block ends."""
    up = start_up(data_dir, **extra)
    try:
        up.wait_for("Palaver is up")
        yield up
    finally:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGTERM)
            try:
                up.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                up.proc.kill()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    with running_up(tmp_path_factory.mktemp("up-restarts")) as running:
        yield running


def test_each_killed_service_comes_back_and_a_meeting_is_still_transcribed(up: RunningUp) -> None:
    pids = up.start_pids()
    assert set(pids) == {"broker", "web", "stt", "merger"}, up.output
    for name in ("stt", "merger", "web"):
        ready_before = up.log_count(name, READY_NEEDLE.get(name, "Application startup complete"))
        os.kill(pids[name], signal.SIGKILL)  # as the OOM killer would
        restarted = up.wait_for(rf"restarted {name}: pid (\d+)")
        assert int(restarted[1]) != pids[name]
        assert re.search(rf"{name} died \(killed by SIGKILL\); restart attempt 1 in 0.5 s", up.output), up.output
        until(lambda: healthy(up.url), f"/healthz after the {name} restart")
        needle = READY_NEEDLE.get(name, "Application startup complete")
        until(lambda: up.log_count(name, needle) > ready_before, f"the new {name} to be ready")  # noqa: B023
    assert up.proc.poll() is None and "keeps dying" not in up.output

    said: list[str] = []
    assert asyncio.run(run_demo(up.url, speed=4, say=said.append)) == 0, "\n".join(said)
    transcript = "\n".join(said).split("Merged transcript:")[1]
    assert re.findall(r"\]\s+(\w+): ", transcript) == [line.speaker_id for line in DEMO_MEETING]
    wer = float(re.search(r"word error rate against the script: ([\d.]+)%", transcript)[1])  # type: ignore[index]
    assert wer <= 10.0, transcript
    restarts = up.restarts()
    assert (restarts["stt"], restarts["merger"], restarts["web"]) == (1, 1, 1), restarts


def test_the_killed_embedded_broker_comes_back_and_takes_audio_again(up: RunningUp) -> None:
    broker = up.start_pids()["broker"]
    os.kill(broker, signal.SIGKILL)
    restarted = int(up.wait_for(r"restarted broker: pid (\d+)")[1])
    assert restarted != broker
    status = palaver("broker", "status", env=up.env)
    assert status.returncode == 0 and f"pid {restarted}" in status.stdout, status.stdout
    until(lambda: healthy(up.url), "/healthz after the broker restart")
    # The API publishes the new account and meeting to Kafka, and the ingest acknowledges audio once Kafka
    # has it: a fully acknowledged stream proves the broker is back for the web process (it reconnected by
    # itself).
    tracks, _ = meeting_tracks(DEMO_MEETING[:1], Voice())
    speaker, pcm = next(iter(tracks.items()))

    async def stream_after_restart() -> StreamResult:
        meeting = await open_meeting(up.url, [speaker], title="after the broker restart")
        return await stream_pcm(up.url, meeting.meeting_id, meeting.people[speaker], pcm, speed=4)

    result = asyncio.run(stream_after_restart())
    assert (result.close_code, result.acked_samples) == (1000, len(pcm)), result
    assert up.restarts()["broker"] == 1
    assert up.proc.poll() is None and "keeps dying" not in up.output


def test_sigterm_stops_every_child_including_restarted_ones(up: RunningUp) -> None:
    pids = [int(p) for p in re.findall(r"pid (\d+)", up.output)]
    assert len(pids) >= 5, up.output  # four at start, and the restarts above
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=90) == 0, up.output
    assert all(gone(pid) for pid in pids), [pid for pid in pids if not gone(pid)]
    assert palaver("broker", "status", env=up.env).returncode == 3, "up stops the broker it started"


def test_a_child_that_dies_at_every_start_stops_the_stack_loudly(tmp_path: Path) -> None:
    run = start_up(tmp_path, PALAVER_WHISPER_MODEL_DIR=str(tmp_path / "no-such-model"), PALAVER_RESTART_LIMIT="3")
    code = run.proc.wait(timeout=300)
    time.sleep(0.5)  # the collector thread reads the last lines
    assert code == 1, run.output
    assert "palaver: stt keeps dying (3 deaths within 60 s, the last: exit code 1); giving up." in run.output
    assert f"Last lines of {tmp_path / 'logs' / 'stt.log'}:" in run.output
    assert "is not a CTranslate2 Whisper model directory (no model.bin)" in run.output  # the log's tail
    assert len(re.findall(r"restarted stt: pid \d+", run.output)) == 2
    pids = [int(p) for p in re.findall(r"pid (\d+)", run.output)]
    assert all(gone(pid) for pid in pids), [pid for pid in pids if not gone(pid)]
    assert palaver("broker", "status", env=run.env).returncode == 3


def test_an_unknown_stt_engine_is_refused_before_anything_starts(tmp_path: Path) -> None:
    result = palaver("up", "--port", str(free_port()), env=embedded_env(tmp_path, PALAVER_STT_ENGINE="bogus"))
    assert result.returncode == 2
    assert "PALAVER_STT_ENGINE='bogus': choose one of whisper, deepgram, openai-realtime" in result.stderr
    assert not (tmp_path / "kafka").exists(), "no broker was started"
