"""The one codec for JSON events. orjson options are set here and nowhere else."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from palaver.events.base import EventV
from palaver.events.registry import TopicSpec, json_event_classes

_OPTIONS = orjson.OPT_NON_STR_KEYS

# (event, version) -> class: the registry's events, so an event is decodable exactly when a topic carries it.
SCHEMAS: dict[tuple[str, int], type[EventV]] = json_event_classes()


class DecodeError(ValueError):
    """The bytes are not a known, valid event. A message-level failure: dead-letter it, do not retry."""


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=_OPTIONS)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def encode(event: EventV) -> bytes:
    # pydantic's serializer writes the JSON in one pass (in Rust): the same bytes as
    # ``dumps(event.model_dump(mode="json"))`` (a contract test checks it), at a quarter of the cost, on
    # the hot paths that encode every dialogue revision and transcript event.
    return event.__pydantic_serializer__.to_json(event)


def decode(data: bytes | str) -> EventV:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise DecodeError("event is not a JSON object")
    schema = SCHEMAS.get((obj.get("event"), obj.get("version")))  # type: ignore[arg-type]
    if schema is None:
        raise DecodeError(f"unknown event {obj.get('event')!r} version {obj.get('version')!r}")
    try:
        return schema.model_validate(obj)
    except ValidationError as exc:
        raise DecodeError(f"invalid {obj.get('event')} v{obj.get('version')}: {exc}") from exc


def decode_on(topic: TopicSpec, data: bytes | str) -> EventV:
    """``decode``, and the event must be one that ``topic`` takes (``TopicSpec.events``): an event on the
    wrong topic is a bad message too (a producer's bug), never processed as if it belonged."""
    event = decode(data)
    if not isinstance(event, topic.events):
        raise DecodeError(f"{type(event).__name__} does not belong on {topic.name} (it takes {', '.join(topic.schemas)})")
    return event
