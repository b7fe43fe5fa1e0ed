"""The web process keeps its background consumers running: a failed one is restarted after a backoff and
reported meanwhile, and nothing else stops."""

from __future__ import annotations

import asyncio

from palaver.metrics import BACKGROUND_RESTARTS
from stack.web import keep_running


async def test_a_failed_consumer_is_restarted_and_reported_until_it_runs() -> None:
    stop = asyncio.Event()
    failures: dict[str, str] = {}
    runs = 0

    async def flaky(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise ConnectionError("store unreachable")
        await stop.wait()

    before = BACKGROUND_RESTARTS.labels(task="flaky")._value.get()
    task = asyncio.create_task(keep_running("flaky", flaky, stop, failures, first_delay_s=0.01, max_delay_s=0.05))
    while runs < 3:
        await asyncio.sleep(0.01)
    assert BACKGROUND_RESTARTS.labels(task="flaky")._value.get() - before == 2
    assert failures == {}, "a running consumer is not reported as failed"
    stop.set()
    await asyncio.wait_for(task, 5)
    assert runs == 3


async def test_stop_during_the_backoff_ends_it_without_another_run() -> None:
    stop = asyncio.Event()
    failures: dict[str, str] = {}
    runs = 0

    async def broken(stop: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("bad environment")

    task = asyncio.create_task(keep_running("broken", broken, stop, failures, first_delay_s=60))
    while runs < 1:
        await asyncio.sleep(0.01)
    assert failures == {"broken": "RuntimeError; restarting"}
    stop.set()
    await asyncio.wait_for(task, 5)
    assert runs == 1
