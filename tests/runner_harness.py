"""Running a service's real step on the real consumer runner over the in-memory broker (tests/fake_broker.py),
for pipeline tests: start a runner, wait for what it should do (never for a length of time), stop it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker, MemoryConsumer, MemoryProducer
from palaver.streams.runner import ConsumerRunner, RunnerConfig, Step

WAIT_S = 5.0  # how long `until` waits for a condition before it fails the test


async def until(holds: Callable[[], bool], what: str, task: asyncio.Task[Any] | None = None) -> None:
    """Return once ``holds()``; fail the test after ``WAIT_S`` or, when ``task`` is given, as soon as it ends
    (its failure is raised)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not holds():
        if task is not None and task.done():
            task.result()
            raise AssertionError(f"the runner stopped before: {what}")
        if loop.time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.002)


@dataclass
class Running:
    """A runner running as ``task`` over ``broker``; ``consumers`` are the consumers it (and its step) made."""

    broker: MemoryBroker
    producer: MemoryProducer
    task: asyncio.Task[None]
    stop: asyncio.Event
    consumers: list[MemoryConsumer] = field(default_factory=list)

    @property
    def consumer(self) -> MemoryConsumer:
        """The runner's own consumer (the first one made)."""
        return self.consumers[0]

    def committed(self, group: str, topic: str, partition: int = 0) -> int | None:
        found = self.broker.committed.get((group, TopicPartition(topic, partition)))
        return found.offset if found else None

    async def finish(self) -> None:
        """Stop gracefully and wait; raises what the runner raised."""
        self.stop.set()
        self.broker.wake()
        await asyncio.wait_for(self.task, 10)


def consumer_factory(
    broker: MemoryBroker, made: list[MemoryConsumer], prepare: Callable[[MemoryConsumer], None] | None = None
) -> Callable[..., MemoryConsumer]:
    """A ``make_consumer`` stand-in over ``broker`` that keeps what it made in ``made``."""

    def make(settings: object, group: str | None, *topics: str, **config: Any) -> MemoryConsumer:
        consumer = broker.consumer(settings, group, *topics, **config)
        if prepare is not None:
            prepare(consumer)
        made.append(consumer)
        return consumer

    return make


def start(
    broker: MemoryBroker,
    settings: Settings,
    config: RunnerConfig,
    step: Step,
    producer: MemoryProducer | None = None,
    made: list[MemoryConsumer] | None = None,
    prepare: Callable[[MemoryConsumer], None] | None = None,
) -> Running:
    """Start ``step`` on a ``ConsumerRunner`` over ``broker``. ``made``: a list the step's own consumer
    factory also fills (its consumers come after the runner's)."""
    producer = producer or broker.producer()
    consumers = made if made is not None else []
    factory = consumer_factory(broker, consumers, prepare)
    runner = ConsumerRunner(settings, config, step, producer, consumer_factory=factory)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    return Running(broker, producer, task, stop, consumers)


@asynccontextmanager
async def running(
    broker: MemoryBroker,
    settings: Settings,
    config: RunnerConfig,
    step: Step,
    producer: MemoryProducer | None = None,
    made: list[MemoryConsumer] | None = None,
    prepare: Callable[[MemoryConsumer], None] | None = None,
) -> AsyncIterator[Running]:
    """``start``, and on leaving stop gracefully and raise what the runner raised."""
    run = start(broker, settings, config, step, producer, made, prepare)
    try:
        yield run
    finally:
        await run.finish()
