"""Fetch, configure, start, stop and inspect the embedded Apache Kafka broker.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` and are cached outside the repository
(``~/.cache/palaver/kafka/<version>``). The broker runs as a detached Java process whose pid, config, data
and log live under ``<data dir>/kafka``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = "4.3.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


class BrokerError(RuntimeError):
    """A problem the user can act on; the message says what to do."""


# The embedded broker shares a small machine with the pipeline. The C1 compiler alone and the serial
# collector spare it C2's compiler threads and the parallel collector's threads, which on 2 cores took CPU
# from everything else while a fresh broker warmed up. Measured (bench/README.md, two alternating pairs
# each): the merger benchmark drained 11,600-12,100 events/s with added-latency p95 11-25 ms at ~4,940/s,
# against 9,200-10,200 and 61-85 ms with the JVM's defaults; in 8-speaker STT runs the broker used 19% of a
# core instead of 38-40%.
JVM_OPTIONS = ("-Xms256m", "-Xmx1g", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def jar_cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "palaver" / "kafka" / KAFKA_VERSION


@dataclass(frozen=True)
class BrokerPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j2.properties"

    @property
    def log(self) -> Path:
        return self.root / "broker.log"

    @property
    def pid(self) -> Path:
        return self.root / "broker.pid"


def java_major_version(java: str = "java") -> int:
    if shutil.which(java) is None:
        raise BrokerError("Java 17 or newer is required for the embedded Kafka broker: `java` is not on PATH")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise BrokerError(f"cannot tell the Java version from `java -version`: {out.stderr.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> None:
    major = java_major_version()
    if major < 17:
        raise BrokerError(f"Java 17 or newer is required for the embedded Kafka broker; found Java {major}")


def fetch_jars(quiet: bool = True) -> Path:
    """Resolve the broker's jars with Maven into the cache (once). Returns the jar directory."""
    target = jar_cache_dir()
    if (target / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        return target
    if shutil.which("mvn") is None:
        raise BrokerError(
            "Maven (`mvn`) is required once, to fetch the Kafka broker jars from Maven Central; install it "
            "(Debian: apt-get install maven) or set PALAVER_KAFKA_BOOTSTRAP to use an existing cluster"
        )
    if not POM.is_file():
        raise BrokerError(f"{POM} is missing: run Palaver from its source checkout")
    staging = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = ["mvn", "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
    if quiet:
        cmd.insert(1, "-q")
    result = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        tail = ((result.stdout or "") + (result.stderr or ""))[-2000:]
        raise BrokerError(f"Maven could not fetch the Kafka {KAFKA_VERSION} jars:\n{tail}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def server_properties(paths: BrokerPaths, port: int, extra: Sequence[str] = ()) -> str:
    """The broker's config. ``extra`` lines go last, so a key they repeat overrides the one above (Java
    properties keep the last): tests use it to add a SASL listener."""
    controller = port + 1
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={paths.data}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            *extra,
            "",
        ]
    )


def log4j_properties(paths: BrokerPaths) -> str:
    return "\n".join(
        [
            "rootLogger.level=INFO",
            "rootLogger.appenderRef.file.ref=FILE",
            "appender.file.type=File",
            "appender.file.name=FILE",
            f"appender.file.fileName={paths.log}",
            "appender.file.layout.type=PatternLayout",
            "appender.file.layout.pattern=[%d] %p %m (%c)%n",
            "logger.kafka.name=kafka",
            "logger.kafka.level=INFO",
            "logger.state.name=state.change.logger",
            "logger.state.level=WARN",
            "",
        ]
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def running_pid(paths: BrokerPaths) -> int | None:
    try:
        pid = int(paths.pid.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"kafka.Kafka" not in cmdline.read_bytes():
        return None  # a recycled pid
    return pid


def _classpath(jars: Path) -> str:
    return str(jars / "*")


def start(root: Path, port: int, timeout_s: float = 60.0, extra: Sequence[str] = ()) -> tuple[int, bool]:
    """Start the broker unless it already runs, and wait until it listens. Returns (pid, started_now).
    ``extra``: more config lines (``server_properties``)."""
    pid = running_pid(BrokerPaths(root))
    if pid is not None:
        return pid, False
    proc = launch(root, port, extra)
    wait_until_listening(root, proc, port, timeout_s)
    return proc.pid, True


def launch(root: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Start a broker process (formatting its storage on first start) and return at once, without waiting
    for it to listen. The caller makes sure none runs (``running_pid``); a supervisor that owns the
    returned process sees its exit status. Raises BrokerError when the ports are taken or Java is missing."""
    paths = BrokerPaths(root)
    for taken in (port, port + 1):
        if port_open(taken):
            raise BrokerError(
                f"port {taken} on 127.0.0.1 is taken by another process; stop it, choose another port with "
                "PALAVER_KAFKA_PORT, or point PALAVER_KAFKA_BOOTSTRAP at a running cluster"
            )
    check_java()
    jars = fetch_jars()
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(server_properties(paths, port, extra))
    paths.log4j.write_text(log4j_properties(paths))
    if not (paths.data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            # "--cluster-id=" form: a base64 id may start with "-", which argparse would take for an option.
            ["java", "-cp", _classpath(jars), "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
             "--config", str(paths.config)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise BrokerError(f"formatting Kafka storage in {paths.data} failed:\n{(fmt.stdout + fmt.stderr)[-2000:]}")
    stdout = open(paths.root / "broker.stdout", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["java", *JVM_OPTIONS, f"-Dlog4j2.configurationFile={paths.log4j}", "-cp", _classpath(jars),
         "kafka.Kafka", str(paths.config)],
        stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    stdout.close()  # the child holds its own copy
    paths.pid.write_text(str(proc.pid))
    return proc


def wait_until_listening(root: Path, proc: subprocess.Popen[bytes], port: int, timeout_s: float = 60.0) -> None:
    """Return once the launched broker listens on ``port``. Raises BrokerError when it exits first, or
    stops it and raises when it does not listen within ``timeout_s``."""
    paths = BrokerPaths(root)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"the Kafka broker exited with {proc.returncode}; see {paths.log}:\n{_tail(paths.log)}")
        if port_open(port):
            return
        time.sleep(0.2)
    stop(root)
    raise BrokerError(f"the Kafka broker did not open port {port} within {timeout_s:.0f}s; see {paths.log}")


def stop(root: Path, timeout_s: float = 30.0) -> bool:
    """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``). Returns whether one was running."""
    paths = BrokerPaths(root)
    pid = running_pid(paths)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    paths.pid.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"
