"""Runs: which machine pass made a meeting's transcript events, and how a replay's run is named.

Every transcript event, dialogue and stored row carries its ``run``. The STT workers' live pass is
``engine:model`` (``whisper:tiny.en``). ``palaver replay`` re-transcribes a meeting's audio into a run of
its own, named by what it changed:

- ``engine:model~replay``: a replay with the environment's settings (``--engine``/``--model`` name the
  engine and model part);
- ``engine:model~<8 hex>``: with ``--set`` overrides; the hex is a hash of the overrides, sorted by name,
  with their typed values (``0.50`` and ``0.5`` are the same override), so the same overrides always name
  the same run and a second identical replay writes the same events again.

``palaver replay --from transcripts`` merges a run's stored transcript events again with other merger
settings, into ``<source run>~merge`` (the environment's merger settings) or ``<source run>~merge-<8 hex>``
(with ``--set`` overrides, hashed as above): the same source and overrides always name the same run.

A replay run is never a live run: ``~`` marks it (``is_replay``), so readers that show a meeting as it
happens (the default run of the read routes, the live socket) keep to the live runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

REPLAY_MARK = "~"
DEFAULT_REPLAY = "replay"
MERGE = "merge"


def live_run(engine: str, model: str) -> str:
    """The run of the STT workers' live pass with this engine and model."""
    return f"{engine}:{model}"


def replay_run(engine: str, model: str, overrides: Mapping[str, object]) -> str:
    """The run a replay with ``overrides`` (setting name -> typed value, JSON-able) writes to."""
    if not overrides:
        return f"{live_run(engine, model)}{REPLAY_MARK}{DEFAULT_REPLAY}"
    return f"{live_run(engine, model)}{REPLAY_MARK}{_digest(overrides)}"


def merge_run(source_run: str, overrides: Mapping[str, object]) -> str:
    """The run a replay from the transcripts writes: ``source_run``'s transcript events merged again with
    the merger ``overrides`` (setting name -> typed value)."""
    suffix = f"{MERGE}-{_digest(overrides)}" if overrides else MERGE
    return f"{source_run}{REPLAY_MARK}{suffix}"


def merged_from(run: str) -> str:
    """The run whose transcript events a ``~merge`` run merged again (``run`` itself for any other run)."""
    base, mark, suffix = run.rpartition(REPLAY_MARK)
    if mark and (suffix == MERGE or (suffix.startswith(f"{MERGE}-") and len(suffix) == len(MERGE) + 9)):
        return base
    return run


def merged_from_sql(column: str = "run") -> str:
    """A ClickHouse expression: ``merged_from`` of ``column``."""
    return f"replaceRegexpOne({column}, '{REPLAY_MARK}{MERGE}(-[0-9a-f]{{8}})?$', '')"


def _digest(overrides: Mapping[str, object]) -> str:
    """8 hex digits of the overrides, sorted by name: the same overrides always give the same digits."""
    canonical = json.dumps(dict(sorted(overrides.items())), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=4).hexdigest()


def is_replay(run: str) -> bool:
    """Whether ``run`` was written by ``palaver replay`` (not a live pass)."""
    return REPLAY_MARK in run


def live_run_sql(column: str = "run") -> str:
    """A ClickHouse expression, true when ``column`` holds a live run: ``ORDER BY`` or ``argMax`` on it put
    live runs first."""
    return f"position({column}, '{REPLAY_MARK}') = 0"
