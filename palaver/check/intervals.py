"""Half-open integer ranges ``(start, end)`` of stream samples: their union and what one misses of another."""

from __future__ import annotations

from collections.abc import Iterable

Range = tuple[int, int]


def union(ranges: Iterable[Range]) -> list[Range]:
    """The ranges merged: sorted, disjoint, touching ones joined; empty ones dropped."""
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def missing(wanted: Range, held: list[Range]) -> list[Range]:
    """The parts of ``wanted`` that ``held`` (a ``union``) does not cover, in order."""
    start, end = wanted
    gaps: list[Range] = []
    for h_start, h_end in held:
        if h_end <= start:
            continue
        if h_start >= end:
            break
        if h_start > start:
            gaps.append((start, h_start))
        start = max(start, h_end)
    if start < end:
        gaps.append((start, end))
    return gaps
