"""The supervisor with small real child processes: restarts, giving up loudly, a death never stops another
child, stop() ends everyone (the broker-like child last). The services themselves: tests/integration."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from palaver.metrics import SUPERVISOR_REGISTRY
from stack.restart_policy import RestartPolicy
from stack.supervisor import (
    ChildKeepsDying,
    ChildSpec,
    Supervisor,
    describe_exit,
    python_child,
    stop_on_signals,
)

FAST = RestartPolicy(limit=3, window_s=60, first_delay_s=0.01, max_delay_s=0.05)


def child(tmp_path: Path, name: str, code: str) -> ChildSpec:
    return python_child(name, ["-c", code], os.environ, tmp_path / f"{name}.log")


def supervise_until(supervisor: Supervisor, done: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        supervisor.check()
        time.sleep(0.02)


def restarts(name: str) -> float | None:
    return SUPERVISOR_REGISTRY.get_sample_value("palaver_supervisor_restarts_total", {"child": name})


def test_a_killed_child_is_restarted_and_its_sibling_keeps_running(tmp_path: Path) -> None:
    supervisor = Supervisor(FAST)
    victim = supervisor.start(child(tmp_path, "victim-a", "import time; time.sleep(60)"))
    sibling = supervisor.start(child(tmp_path, "sibling-a", "import time; time.sleep(60)"))
    try:
        os.kill(victim.pid, signal.SIGKILL)
        supervise_until(supervisor, lambda: supervisor.pids()["victim-a"] not in (None, victim.pid))
        assert supervisor.pids()["sibling-a"] == sibling.pid and sibling.poll() is None
        assert restarts("victim-a") == 1 and restarts("sibling-a") == 0
    finally:
        supervisor.stop()


def test_a_child_that_keeps_dying_is_given_up_on_with_its_exit_and_log_tail(tmp_path: Path) -> None:
    supervisor = Supervisor(FAST)
    supervisor.start(child(tmp_path, "crasher-b", "print('bad configuration: no such model', flush=True); exit(3)"))
    try:
        with pytest.raises(ChildKeepsDying) as raised:
            supervise_until(supervisor, lambda: False)
    finally:
        supervisor.stop()
    message = str(raised.value)
    assert "crasher-b keeps dying (3 deaths within 60 s, the last: exit code 3)" in message
    assert "bad configuration: no such model" in message and str(tmp_path / "crasher-b.log") in message
    assert restarts("crasher-b") == 2  # the third death gave up


def test_a_child_that_cannot_be_started_again_counts_as_dying(tmp_path: Path) -> None:
    starts = []

    def launch() -> object:
        if starts:
            raise OSError("port 9 is taken")
        starts.append(1)
        return python_child("x", ["-c", "exit(1)"], os.environ, tmp_path / "flaky.log").launch()

    supervisor = Supervisor(FAST)
    supervisor.start(ChildSpec("flaky-c", launch, tmp_path / "flaky.log"))  # type: ignore[arg-type]
    with pytest.raises(ChildKeepsDying, match=r"the last: could not start: port 9 is taken"):
        supervise_until(supervisor, lambda: False)
    supervisor.stop()


def on_sigterm(order: Path, name: str, linger_s: float = 0.0) -> str:
    """A child that, on SIGTERM, lingers, then notes its name in ``order`` and exits 0."""
    return (f"import signal, sys, time\n"
            f"def bye(*_):\n    time.sleep({linger_s})\n    open({str(order)!r}, 'a').write({name!r} + '\\n')\n"
            f"    sys.exit(0)\n"
            f"signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\ntime.sleep(60)\n")  # fmt: skip


def test_stop_ends_every_child_the_needed_one_last_and_kills_one_that_ignores_sigterm(tmp_path: Path) -> None:
    order = tmp_path / "order.txt"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    supervisor = Supervisor(FAST)
    broker = child(tmp_path, "broker-d", on_sigterm(order, "broker"))
    supervisor.start(ChildSpec(broker.name, broker.launch, broker.log, needed_by_others=True))
    slow = supervisor.start(child(tmp_path, "slow-d", on_sigterm(order, "slow", linger_s=0.5)))
    spec = child(tmp_path, "stubborn-d", stubborn)
    deaf = supervisor.start(ChildSpec(spec.name, spec.launch, spec.log, stop_timeout_s=0.5))
    newest = supervisor.start(child(tmp_path, "newest-d", on_sigterm(order, "newest")))
    for name in ("broker-d", "slow-d", "stubborn-d", "newest-d"):  # their SIGTERM handlers are in place
        supervise_until(supervisor, lambda: "ready" in (tmp_path / f"{name}.log").read_text())  # noqa: B023
    supervisor.stop()
    assert (slow.returncode, newest.returncode, deaf.returncode) == (0, 0, -signal.SIGKILL)
    assert order.read_text().split() == ["newest", "slow", "broker"]  # the needed one after the others exited
    assert supervisor.children == []
    supervisor.stop()  # idempotent


def test_exits_are_described_as_codes_or_signals() -> None:
    assert describe_exit(2) == "exit code 2"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(0) == "exit code 0"


def test_children_use_this_interpreter(tmp_path: Path) -> None:
    proc = child(tmp_path, "which-e", "import sys; print(sys.executable)").launch()
    assert proc.wait(timeout=30) == 0
    assert (tmp_path / "which-e.log").read_text().strip() == sys.executable


def test_sigterm_asks_the_supervision_loop_to_stop(tmp_path: Path) -> None:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(FAST)
    supervisor.start(child(tmp_path, "sleeper-f", "import time; time.sleep(60)"))
    try:
        stopping = stop_on_signals()
        os.kill(os.getpid(), signal.SIGTERM)  # handled: pytest goes on
        assert stopping.is_set()
        supervisor.run(stopping)  # returns at once, leaving the children to stop()
        assert supervisor.pids()["sleeper-f"] is not None
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
