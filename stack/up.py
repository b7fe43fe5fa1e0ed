"""``palaver up``: the broker (unless external) and one process per service group, on one machine, supervised.

Process groups: ``api ingest store enrichment`` share a process because chdb lets one process own the data dir;
``stt`` and ``merger`` get their own. Every child logs to ``<data dir>/logs/<name>.log``; the embedded broker
to ``<data dir>/kafka/broker.log``. A child that dies is restarted (``stack.supervisor``), the broker too
when this command started it. Ctrl-C or SIGTERM stops the children (newest first), then that broker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial

import httpx

from palaver.broker import embedded
from palaver.settings import Settings
from stack.https import check_tls, tls_args
from stack.metrics_access import metrics_host
from stack.services import check_engine
from stack.supervisor import (
    ChildSpec,
    StackError,
    StopRequest,
    Supervisor,
    python_child,
    restart_policy,
    serve_metrics,
)

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("web", ("api", "ingest", "store", "enrichment")),
    ("stt", ("stt",)),
    ("merger", ("merger",)),
)
# Ports above the API port: the stt and merger processes' /metrics, then the supervisor's own.
SUPERVISOR_METRICS_OFFSET = len(GROUPS)
PRINT = partial(print, flush=True)  # in step with the supervisor's log lines on stderr


class Stack:
    """The supervised pieces of ``palaver up``; ``stop()`` is idempotent."""

    def __init__(self, settings: Settings, say: Callable[[str], None] = PRINT):
        self.settings = settings
        self.say = say
        self.supervisor = Supervisor(restart_policy(settings))
        self.broker_started = False

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.serves_https else "http"
        return f"{scheme}://{self.settings.api_host}:{self.settings.api_port}"

    @property
    def metrics_port(self) -> int:
        return self.settings.api_port + SUPERVISOR_METRICS_OFFSET

    @property
    def metrics_host(self) -> str | None:
        """Where the supervisor serves its metrics (PALAVER_METRICS_ACCESS); None: it does not."""
        return metrics_host(self.settings, self.settings.api_host)

    def start(self, timeout_s: float = 180.0, serve_supervisor_metrics: bool = True) -> None:
        """Start everything and wait until the API answers /healthz; children that die meanwhile are
        restarted as later on. On any exception (KeyboardInterrupt too) stops what it started and re-raises:
        UsageError for a bad STT engine setting, ChildKeepsDying, StackError or BrokerError."""
        s = self.settings
        check_engine(s, ["stt"])  # a usage error now, not an stt child that keeps dying
        check_tls(s)
        if embedded.port_open(s.api_port, s.api_host):
            raise StackError(f"port {s.api_port} is taken; choose another with --port")
        if serve_supervisor_metrics and self.metrics_host is not None:
            serve_metrics(self.metrics_port, self.metrics_host)
        s.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_broker()
            env = {**os.environ, **_settings_env(s)}
            for index, (name, services) in enumerate(GROUPS):
                args = ["-m", "stack", "run", *services, "--host", s.api_host, "--port", str(s.api_port)]
                if name == "web":
                    args += tls_args(s)
                # Processes without an HTTP server expose Prometheus metrics on the next ports.
                child_env = env if name == "web" else {**env, "PALAVER_METRICS_PORT": str(s.api_port + index)}
                spec = python_child(name, args, child_env, s.log_dir / f"{name}.log")
                pid = self.supervisor.start(spec).pid
                self.say(f"  {name:<7} ({' '.join(services)}) pid {pid}, log {spec.log}")
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start_broker(self) -> None:
        s = self.settings
        if not s.uses_embedded_broker:
            self.say(f"using the Kafka cluster at {s.kafka_bootstrap}")
            return
        root = s.data_dir / "kafka"
        paths = embedded.BrokerPaths(root)
        running = embedded.running_pid(paths)
        if running is not None:
            self.say(f"using the embedded broker already running (pid {running}); it is not supervised here")
            return
        self.say(f"starting the embedded Kafka {embedded.KAFKA_VERSION} broker on 127.0.0.1:{s.kafka_port}")
        spec = ChildSpec("broker", lambda: embedded.launch(root, s.kafka_port), paths.log,
                         needed_by_others=True, stop_timeout_s=30.0)  # fmt: skip
        proc = self.supervisor.start(spec)
        self.broker_started = True
        embedded.wait_until_listening(root, proc, s.kafka_port)
        self.say(f"  broker  pid {proc.pid}, log {paths.log}")

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.supervisor.check()
            try:
                # Under HTTPS the probe does not verify the certificate: it asks the web process this
                # command started, on this machine, which holds that very certificate (often self-signed).
                if httpx.get(f"{self.url}/healthz", timeout=2, verify=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise StackError(f"Palaver did not become healthy within {timeout_s:.0f}s; see the logs above")

    def run(self, stopping: StopRequest) -> None:
        """Supervise until ``stopping`` is set; raises ChildKeepsDying. Always stops the stack."""
        try:
            self.supervisor.run(stopping)
            self.say("stopping ...")
        finally:
            self.stop()

    def stop(self) -> None:
        self.supervisor.stop()
        if self.broker_started:
            embedded.BrokerPaths(self.settings.data_dir / "kafka").pid.unlink(missing_ok=True)
            self.broker_started = False


def _settings_env(s: Settings) -> dict[str, str]:
    """Children read the same settings from the environment (the entrypoint's one read)."""
    env = {"PALAVER_DATA_DIR": str(s.data_dir), "PALAVER_KAFKA_PORT": str(s.kafka_port),
           "PALAVER_TOPIC_NAMESPACE": s.topic_namespace, "PALAVER_INGEST_MAX_SPEED": str(s.ingest_max_speed)}  # fmt: skip
    if s.kafka_bootstrap:
        env["PALAVER_KAFKA_BOOTSTRAP"] = s.kafka_bootstrap
    if s.kafka_replication_factor:
        env["PALAVER_KAFKA_REPLICATION_FACTOR"] = str(s.kafka_replication_factor)
    if s.clickhouse_url:
        env["PALAVER_CLICKHOUSE_URL"] = s.clickhouse_url
    return env
