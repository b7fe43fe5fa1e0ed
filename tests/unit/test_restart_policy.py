"""The supervisor's restart policy: backoff growth, the window, giving up (pure: time is passed in)."""

from __future__ import annotations

import pytest

from stack.restart_policy import GiveUp, Restart, RestartPolicy


def deaths_at(policy: RestartPolicy, times: list[float]) -> list[Restart | GiveUp]:
    history: tuple[float, ...] = ()
    decisions = []
    for now in times:
        decision, history = policy.on_death(history, now)
        decisions.append(decision)
    return decisions


def test_the_delay_doubles_with_each_death_inside_the_window() -> None:
    policy = RestartPolicy(limit=10, window_s=60, first_delay_s=0.5, max_delay_s=30)
    decisions = deaths_at(policy, [0, 1, 3, 6, 10])
    assert decisions == [Restart(1, 0.5), Restart(2, 1.0), Restart(3, 2.0), Restart(4, 4.0), Restart(5, 8.0)]


def test_the_delay_stops_growing_at_the_cap() -> None:
    policy = RestartPolicy(limit=100, window_s=1000, first_delay_s=0.5, max_delay_s=3)
    decisions = deaths_at(policy, [float(t) for t in range(8)])
    assert [d.delay_s for d in decisions if isinstance(d, Restart)] == [0.5, 1, 2, 3, 3, 3, 3, 3]


def test_the_limit_th_death_within_the_window_gives_up() -> None:
    policy = RestartPolicy(limit=5, window_s=60)
    decisions = deaths_at(policy, [0, 2, 5, 10, 20])
    assert all(isinstance(d, Restart) for d in decisions[:4])
    assert decisions[4] == GiveUp(deaths=5, window_s=60)


def test_deaths_spread_wider_than_the_window_never_give_up_and_start_again_from_the_first_delay() -> None:
    policy = RestartPolicy(limit=3, window_s=60, first_delay_s=0.5)
    decisions = deaths_at(policy, [0, 30, 61, 95, 130, 200])
    # at 61 the death at 0 has left the window; at 200 every earlier one has
    assert decisions == [Restart(1, 0.5), Restart(2, 1.0), Restart(2, 1.0), Restart(2, 1.0), Restart(2, 1.0),
                         Restart(1, 0.5)]  # fmt: skip


def test_the_history_keeps_only_the_deaths_within_the_window() -> None:
    policy = RestartPolicy(limit=5, window_s=10)
    _, history = policy.on_death((1.0, 5.0, 12.0), now=14.0)
    assert history == (5.0, 12.0, 14.0)


def test_a_limit_of_one_never_restarts() -> None:
    assert deaths_at(RestartPolicy(limit=1, window_s=60), [100.0]) == [GiveUp(1, 60)]


@pytest.mark.parametrize(
    "bad",
    [{"limit": 0}, {"window_s": 0}, {"first_delay_s": -1}, {"first_delay_s": 5, "max_delay_s": 1}],
)
def test_a_policy_that_cannot_work_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid restart policy"):
        RestartPolicy(**bad)  # type: ignore[arg-type]
