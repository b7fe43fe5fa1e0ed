"""The process supervisor of ``palaver up`` and ``palaver run stt --workers N``.

It starts children, restarts one that dies (the services recover on their own: consumer groups resume from
committed offsets, acknowledged audio waits in Kafka) after the delay ``RestartPolicy`` gives, and gives up
only when a child keeps dying: then it raises ``ChildKeepsDying``, naming the child, its exit and the tail of
its log, and the caller stops everything. A death never stops another child. Every restart is logged and
counted in ``palaver_supervisor_restarts_total{child}``, which ``serve_metrics`` exposes.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import start_http_server

from palaver.metrics import SUPERVISOR_REGISTRY, SUPERVISOR_RESTARTS
from palaver.settings import Settings
from stack.restart_policy import GiveUp, RestartPolicy

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 15


class StackError(RuntimeError):
    """The stack cannot run; the message says why."""


class ChildKeepsDying(StackError):
    def __init__(self, name: str, exit: str, deaths: int, window_s: float, log_path: Path):
        self.name = name
        super().__init__(
            f"{name} keeps dying ({deaths} deaths within {window_s:g} s, the last: {exit}); giving up. "
            f"Last lines of {log_path}:\n{log_tail(log_path)}"
        )


def restart_policy(settings: Settings) -> RestartPolicy:
    return RestartPolicy(limit=settings.restart_limit, window_s=settings.restart_window_s)


@dataclass(frozen=True)
class ChildSpec:
    """One supervised child: how to start it (again) and where it logs. ``needed_by_others``: stopped only
    after every other child has exited (the broker the services flush to)."""

    name: str
    launch: Callable[[], subprocess.Popen[bytes]]
    log: Path
    needed_by_others: bool = False
    stop_timeout_s: float = 20.0


def python_child(name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> ChildSpec:
    """A child running ``python args...`` with this interpreter, its output appended to ``log_path``."""

    def launch() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as out:  # the child keeps its own descriptor
            return subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=dict(env))  # fmt: skip

    return ChildSpec(name, launch, log_path)


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    deaths: tuple[float, ...] = ()
    restart_at: float | None = None  # set while a dead child waits for its restart delay


@dataclass
class Supervisor:
    """Children in start order. ``check`` is one supervision pass; ``stop`` is idempotent."""

    policy: RestartPolicy
    clock: Callable[[], float] = time.monotonic
    children: list[_Child] = field(default_factory=list)

    def start(self, spec: ChildSpec) -> subprocess.Popen[bytes]:
        """Start a child and supervise it from now on (a launch error propagates: nothing to restart yet)."""
        proc = spec.launch()
        self.children.append(_Child(spec, proc))
        SUPERVISOR_RESTARTS.labels(child=spec.name)  # the series exists (at 0) before the first restart
        return proc

    def pids(self) -> dict[str, int | None]:
        return {c.spec.name: c.proc.pid if c.proc and c.proc.poll() is None else None for c in self.children}

    def check(self) -> None:
        """Notice deaths, schedule their restarts, start the children whose delay has passed. Raises
        ChildKeepsDying when the policy gives up on one (the caller stops the stack)."""
        for child in self.children:
            if child.proc is not None and (code := child.proc.poll()) is not None:
                child.proc = None
                self._died(child, describe_exit(code))
            if child.restart_at is not None and self.clock() >= child.restart_at:
                child.restart_at = None
                self._restart(child)

    def _died(self, child: _Child, exit: str) -> None:
        decision, child.deaths = self.policy.on_death(child.deaths, self.clock())
        name = child.spec.name
        if isinstance(decision, GiveUp):
            log.error("%s died (%s): %d deaths within %g s, giving up", name, exit, decision.deaths,
                      decision.window_s)  # fmt: skip
            raise ChildKeepsDying(name, exit, decision.deaths, decision.window_s, child.spec.log)
        log.warning("%s died (%s); restart attempt %d in %.1f s (log %s)", name, exit, decision.attempt,
                    decision.delay_s, child.spec.log)  # fmt: skip
        child.restart_at = self.clock() + decision.delay_s

    def _restart(self, child: _Child) -> None:
        try:
            child.proc = child.spec.launch()
        except Exception as exc:  # a failed start is one more death, judged by the policy
            self._died(child, f"could not start: {exc}")
            return
        SUPERVISOR_RESTARTS.labels(child=child.spec.name).inc()
        log.warning("restarted %s: pid %d", child.spec.name, child.proc.pid)

    def run(self, stopping: StopRequest, interval_s: float = 0.2) -> None:
        """Supervise until ``stopping`` is set; raises ChildKeepsDying. Does not stop the children."""
        while not stopping.is_set():
            self.check()
            time.sleep(interval_s)

    def stop(self) -> None:
        """SIGTERM the children newest first, wait (bounded per child), SIGKILL the ones still there; the
        ones others need go last, after the rest have exited."""
        first = [c for c in reversed(self.children) if not c.spec.needed_by_others]
        last = [c for c in reversed(self.children) if c.spec.needed_by_others]
        for wave in (first, last):
            running = [c for c in wave if c.proc is not None and c.proc.poll() is None]
            for child in running:
                child.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            for child in running:
                try:
                    child.proc.wait(timeout=child.spec.stop_timeout_s)  # type: ignore[union-attr]
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop within %g s; killing it", child.spec.name,
                                child.spec.stop_timeout_s)  # fmt: skip
                    child.proc.kill()  # type: ignore[union-attr]
                    child.proc.wait()  # type: ignore[union-attr]
        self.children = []


def describe_exit(code: int) -> str:
    """``exit code 2`` or ``killed by SIGKILL`` (Popen reports a signal as a negative code)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


def interrupt_on_signals() -> None:
    """SIGINT (Ctrl-C) and SIGTERM raise KeyboardInterrupt, so a start-up can stop what it started."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)


class StopRequest:
    """A flag a signal handler sets. Not a threading.Event: a handler that interrupts its own thread
    inside the event's lock would wait for that lock forever."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


def stop_on_signals() -> StopRequest:
    """A stop request that SIGINT (Ctrl-C) or SIGTERM sets, instead of interrupting the program."""
    stopping = StopRequest()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopping.set())
    return stopping


def serve_metrics(port: int, host: str) -> None:
    """Serve the supervisor's own metrics (its registry only, not the services' catalogue, which would
    show zeros here) at http://host:port/metrics, from a daemon thread."""
    try:
        start_http_server(port, addr=host, registry=SUPERVISOR_REGISTRY)
    except OSError as exc:
        raise StackError(f"cannot serve the supervisor's metrics on {host}:{port}: {exc}") from exc
    log.info("supervisor metrics on http://%s:%d/metrics", host, port)
