"""The frame source's tick schedule (:class:`TickSchedule`), driven with times passed in: the
grid does not drift, lost ticks are made up a little faster than the rate (never back to back)
and then the grid starts again, and a moving screen found unchanged is looked at again."""

from __future__ import annotations

import pytest

from remotehands.agent.framesource import (
    CATCH_UP,
    CATCH_UP_GAP,
    RECHECK_AT,
    TICK_HEADROOM,
    TickSchedule,
)


def test_ticks_stay_on_the_grid_a_little_above_the_rate_asked() -> None:
    ticks = TickSchedule.start(30.0, 100.0)
    assert ticks.due == 100.0
    assert ticks.period == pytest.approx(1 / (30 * TICK_HEADROOM))
    # Each tick starts late and takes a while: the deadlines stay where the grid put them.
    for n in range(1, 1000):
        due = ticks.due
        ticks.ran(due + 0.004, True, due + 0.009)
        assert ticks.due == pytest.approx(100.0 + n * ticks.period)
    # A thousand ticks later the grid has not drifted: more than 30 a second over the run.
    assert 1000 / (ticks.due - 100.0) > 30.0


def test_lost_ticks_are_made_up_without_a_burst_then_the_grid_starts_again() -> None:
    ticks = TickSchedule.start(30.0, 0.0)
    period = ticks.period
    ticks.ran(0.0, True, 0.001)
    # A stall of two and a half periods: two ticks are behind.
    ticks.ran(2.5 * period, True, 2.5 * period + 0.001)
    # Made up, never closer than CATCH_UP_GAP periods, until the ticks are back on the grid.
    last = 2.5 * period
    while ticks.due > ticks.origin + ticks.index * period + 1e-9:
        assert ticks.due - last == pytest.approx(CATCH_UP_GAP * period)
        last = ticks.due
        ticks.ran(last, True, last + 0.001)
    assert ticks.origin == 0.0 and ticks.index <= 12
    # A stall longer than CATCH_UP periods: a new grid, one period after the late tick.
    late = ticks.due + (CATCH_UP + 2) * period
    ticks.ran(late, True, late + 0.001)
    assert ticks.due == pytest.approx(late + period)


def test_a_moving_screen_found_unchanged_is_looked_at_again_once() -> None:
    ticks = TickSchedule.start(30.0, 0.0)
    period = ticks.period
    ticks.ran(0.0, True, 0.001)
    ticks.ran(period, False, period + 0.001)  # between two repaints
    assert ticks.due == pytest.approx(period + RECHECK_AT * period)
    ticks.ran(ticks.due, True, ticks.due + 0.001)
    assert ticks.due == pytest.approx(2 * period)  # the grid is where it was
    ticks.ran(2 * period, False, 2 * period + 0.001)
    ticks.ran(ticks.due, False, ticks.due + 0.001)  # the look again found nothing either
    assert ticks.due == pytest.approx(3 * period)  # a still screen: ticks only
    ticks.ran(3 * period, False, 3 * period + 0.001)
    assert ticks.due == pytest.approx(4 * period) and ticks.recheck is None


def test_a_restart_puts_the_next_tick_where_asked() -> None:
    ticks = TickSchedule.start(10.0, 0.0)
    ticks.ran(0.0, True, 0.01)
    ticks.restart(0.05)
    assert ticks.due == 0.05 and ticks.recheck is None
    ticks.ran(0.05, True, 0.06)
    assert ticks.due == pytest.approx(0.05 + ticks.period)
