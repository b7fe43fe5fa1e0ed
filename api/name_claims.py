"""The asking side of the name registry (``api.name_registry``): claim names for a user and wait for the
decisions, release names a user no longer holds.

Each asker (every API process, and ``palaver admin create-user``) reads the ``name.decisions`` topic from
its end without a group, as the live hub reads dialogues, and matches decisions to its waiting requests by
``request_id``; decisions for other askers are dropped. A claim is answered within ``timeout_s`` or counts as
unanswered (no registry member owns its partition yet, the broker is slow): the caller releases whatever it
claimed, since a late grant would hold the name for nobody, and says to try again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from palaver import ids
from palaver.events import decode_on, encode
from palaver.events.name_claims_v1 import NameClaimV1, NameDecisionV1, NameReleaseV1
from palaver.events.registry import NAME_CLAIMS, NAME_DECISIONS, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer
from palaver.streams.runner import Committed, ConsumerRunner, RunnerConfig, Step


@dataclass
class ClaimOutcome:
    """What became of each name claimed: granted, refused (another user holds it), or no answer in time."""

    granted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)

    @property
    def all_granted(self) -> bool:
        return not (self.refused or self.unanswered)


def _now_ms() -> int:
    return int(time.time() * 1000)


class NameClaims(Step):
    def __init__(self, settings: Settings, producer: AIOKafkaProducer, service: str = "claimants",
                 consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer):  # fmt: skip
        """``producer`` (started and stopped by the caller) sends the requests; ``service`` names this reader
        in logs and metrics."""
        self._settings = settings
        self._producer = producer
        self._consumer_factory = consumer_factory
        self._runner = RunnerConfig(service=service, topics=(NAME_DECISIONS,), group=None, poll_ms=100)
        self._claims = topic_name(settings.topic_namespace, NAME_CLAIMS.name)
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self.ready = asyncio.Event()  # set once the reader's position is fixed: later decisions reach it

    async def run(self, stop: asyncio.Event) -> None:
        """Read decisions until ``stop`` is set. Run again after a failure: requests waiting meanwhile
        may miss their decision (they time out)."""
        self.ready.clear()
        await ConsumerRunner(self._settings, self._runner, self, consumer_factory=self._consumer_factory).run(stop)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        self.ready.set()

    def process(self, record: ConsumerRecord) -> None:
        decision = decode_on(NAME_DECISIONS, record.value)
        assert isinstance(decision, NameDecisionV1)
        self.settle(decision)

    def expect(self, request_id: str) -> asyncio.Future[bool]:
        """The future the decision of ``request_id`` will settle (granted or not); register it before the
        request is sent."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def settle(self, decision: NameDecisionV1) -> bool:
        """Hand a decision to the request waiting for it; False when none waits here (another asker's, or
        a repeat)."""
        waiter = self._waiting.pop(decision.request_id, None)
        if waiter is None or waiter.done():
            return False
        waiter.set_result(decision.granted)
        return True

    async def claim(self, names: Sequence[str], user_id: str, timeout_s: float) -> ClaimOutcome:
        """Claim ``names`` (normalized, ``api.names.name_key``) for ``user_id`` at once and wait at most
        ``timeout_s`` for their decisions. A broker that cannot take the requests leaves them unanswered."""
        deadline = time.monotonic() + timeout_s
        outcome = ClaimOutcome()
        try:
            await asyncio.wait_for(self.ready.wait(), timeout_s)
        except TimeoutError:
            outcome.unanswered = list(names)
            return outcome
        requests = {uuid.uuid4().hex: name for name in names}
        futures = {request_id: self.expect(request_id) for request_id in requests}
        try:
            now = _now_ms()
            sends = [
                self._producer.send_and_wait(self._claims, encode(NameClaimV1(
                    event_id=ids.event_id("name.claim", request_id), request_id=request_id, name=name,
                    user_id=user_id, requested_at_ms=now)), key=name.encode())
                for request_id, name in requests.items()
            ]  # fmt: skip
            try:
                await asyncio.wait_for(asyncio.gather(*sends), max(0.0, deadline - time.monotonic()))
            except (KafkaError, TimeoutError):
                pass  # whatever was not sent stays unanswered
            remaining = max(0.0, deadline - time.monotonic())
            if remaining > 0:
                await asyncio.wait(futures.values(), timeout=remaining)
            for request_id, name in requests.items():
                future = futures[request_id]
                if not future.done():
                    outcome.unanswered.append(name)
                else:
                    (outcome.granted if future.result() else outcome.refused).append(name)
            return outcome
        finally:
            for request_id, future in futures.items():
                self._waiting.pop(request_id, None)
                future.cancel()

    async def release(self, names: Sequence[str], user_id: str) -> None:
        """Free ``names`` where ``user_id`` holds them, once the requests are in Kafka (no answer is
        awaited: a later claim of the name comes after the release in its partition)."""
        now = _now_ms()
        await asyncio.gather(*(
            self._producer.send_and_wait(self._claims, encode(NameReleaseV1(
                event_id=ids.event_id("name.release", request_id), request_id=request_id, name=name,
                user_id=user_id, requested_at_ms=now)), key=name.encode())
            for request_id, name in ((uuid.uuid4().hex, name) for name in names)
        ))  # fmt: skip
