"""The soak's verdict (deploy/local/soak.py) on synthetic per-minute series: memory growth after the
warm-up and consumer lag that keeps growing fail the run; flat or noisy-but-bounded series pass."""

from __future__ import annotations

import pytest

from deploy.local.soak import lag_keeps_growing, memory_growth, verdict

pytestmark = pytest.mark.unit

WARMUP = 3


def test_flat_memory_and_lag_pass() -> None:
    rss = {"budget": [60, 90, 110, 120, 121, 119, 122, 120, 121, 123]}  # grows during warm-up only
    lag = {"clustergrants.budget": [0, 40, 10, 5, 30, 0, 12, 3, 25, 8]}
    result = verdict(rss, lag, WARMUP)
    assert result.ok, result.failures
    assert result.memory_growth["budget"] == pytest.approx(121 / 120 - 1, abs=1e-4)
    assert result.lag_growing == {"clustergrants.budget": False}


def test_memory_growth_above_ten_percent_after_warm_up_fails() -> None:
    rss = {"notify": [50, 100, 100, 100, 103, 106, 109, 112, 114, 116]}
    result = verdict(rss, {}, WARMUP)
    assert not result.ok
    assert result.memory_growth["notify"] == pytest.approx(0.14)
    assert "notify: memory grew 14.0%" in result.failures[0]


def test_exactly_ten_percent_is_allowed_and_one_spike_at_the_end_is_not_growth() -> None:
    assert verdict({"intake": [1, 1, 1, 100, 105, 110, 110, 110]}, {}, WARMUP).ok
    # the median of the last three samples: one spike does not fail the run, two do
    assert memory_growth([100, 100, 100, 100, 150]) == 0.0
    assert memory_growth([100, 100, 100, 150, 150]) == pytest.approx(0.5)


def test_lag_that_keeps_growing_fails_and_a_bounded_rise_does_not() -> None:
    growing = [0, 0, 0, 10, 80, 200, 350, 600, 900]
    result = verdict({}, {"clustergrants.notify": growing}, WARMUP)
    assert not result.ok and result.lag_growing == {"clustergrants.notify": True}
    assert not lag_keeps_growing([0, 1, 2, 3, 4, 5, 6])  # rising by less than the floor: noise
    assert not lag_keeps_growing([10, 80, 200, 150, 350, 600, 900])  # fell once in the window: it drains
    assert not lag_keeps_growing([10, 80, 200])  # too short to say


def test_warm_up_samples_are_not_judged() -> None:
    lag = {"g": [0, 100, 200, 300, 400, 500, 500, 400, 300, 200]}
    assert verdict({}, lag, 5).ok
    assert lag_keeps_growing(lag["g"][:6])  # the same rise, judged, is growth
