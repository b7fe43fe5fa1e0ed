"""Shared test configuration. Real-infrastructure tests live in tests/integration and are marked
``integration`` (each module's pytestmark); every other test is a unit test and may not reach a real broker
or ClickHouse (tests/infrastructure_guard.py)."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.infrastructure_guard import refuse_infrastructure


def _guarded(item: pytest.Item) -> Generator[None]:
    """Run the wrapped phase with the real infrastructure refused, unless the item is marked integration."""
    if item.get_closest_marker("integration") is not None:
        return (yield)
    with pytest.MonkeyPatch.context() as monkeypatch:
        refuse_infrastructure(monkeypatch, item.nodeid)
        return (yield)


# Setup as well as the call: a unit test's module- or session-scoped fixtures are set up with it, and they
# may not open a connection either.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None]:
    return (yield from _guarded(item))
