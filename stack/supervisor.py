"""``palaver up``: the broker (unless external) and one process per service group, on one machine.

Process groups: ``api ingest store`` share a process because chdb lets one process own the data dir;
``stt`` and ``merger`` get their own. Every child logs to ``<data dir>/logs/<name>.log``. Ctrl-C or
SIGTERM stops the children (newest first), then the broker if this command started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from palaver.broker import embedded
from palaver.settings import Settings

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("web", ("api", "ingest", "store")),
    ("stt", ("stt",)),
    ("merger", ("merger",)),
)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


class Stack:
    """The running pieces of ``palaver up``; ``stop()`` is idempotent."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = print):
        self.settings = settings
        self.say = say
        self.children: list[Child] = []
        self.broker_started = False

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def start(self, timeout_s: float = 180.0) -> None:
        s = self.settings
        s.log_dir.mkdir(parents=True, exist_ok=True)
        if s.uses_embedded_broker:
            root = s.data_dir / "kafka"
            self.say(f"starting the embedded Kafka {embedded.KAFKA_VERSION} broker on 127.0.0.1:{s.kafka_port} ...")
            _, self.broker_started = embedded.start(root, s.kafka_port)
            self.say(f"  broker log: {embedded.BrokerPaths(root).log}")
        else:
            self.say(f"using the Kafka cluster at {s.kafka_bootstrap}")
        if embedded.port_open(s.api_port, s.api_host):
            self.stop()
            raise embedded.BrokerError(f"port {s.api_port} is taken; choose another with --port")
        env = {**os.environ, **_settings_env(s)}
        for index, (name, services) in enumerate(GROUPS):
            log = s.log_dir / f"{name}.log"
            cmd = [sys.executable, "-m", "stack", "run", *services, "--host", s.api_host, "--port", str(s.api_port)]
            # Processes without an HTTP server expose Prometheus metrics on the next ports.
            child_env = env if name == "web" else {**env, "PALAVER_METRICS_PORT": str(s.api_port + index)}
            out = open(log, "ab")  # noqa: SIM115 - handed to the child
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env)
            self.children.append(Child(name, proc, log))
            self.say(f"  {name:<7} ({' '.join(services)}) pid {proc.pid}, log {log}")
        self._wait_healthy(timeout_s)

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_children()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Palaver did not become healthy within {timeout_s:.0f}s; see the logs above")

    def check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                tail = "\n".join(child.log.read_text(errors="replace").splitlines()[-15:])
                self.stop()
                raise RuntimeError(f"{child.name} exited with {code}; last lines of {child.log}:\n{tail}")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        self.children = []
        if self.broker_started:
            embedded.stop(self.settings.data_dir / "kafka")
            self.broker_started = False


def _settings_env(s: Settings) -> dict[str, str]:
    """Children read the same settings from the environment (the entrypoint's one read)."""
    env = {"PALAVER_DATA_DIR": str(s.data_dir), "PALAVER_KAFKA_PORT": str(s.kafka_port),
           "PALAVER_TOPIC_NAMESPACE": s.topic_namespace}  # fmt: skip
    if s.kafka_bootstrap:
        env["PALAVER_KAFKA_BOOTSTRAP"] = s.kafka_bootstrap
    if s.kafka_replication_factor:
        env["PALAVER_KAFKA_REPLICATION_FACTOR"] = str(s.kafka_replication_factor)
    if s.clickhouse_url:
        env["PALAVER_CLICKHOUSE_URL"] = s.clickhouse_url
    return env


def run_until_signal(stack: Stack) -> int:
    """Block until Ctrl-C/SIGTERM or a child dies; always stops the stack."""
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stopping:
            stack.check_children()
            time.sleep(0.5)
        stack.say("stopping ...")
        return 0
    except RuntimeError as exc:
        stack.say(str(exc))
        return 1
    finally:
        stack.stop()
