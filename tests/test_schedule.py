"""The learning-rate schedule: linear warm-up, then cosine, linear or constant decay to peak * min_ratio."""

from __future__ import annotations

import pytest

from tinylm.training.schedule import learning_rate

PEAK, WARMUP, MIN_RATIO = 3e-3, 10, 0.1
FLOOR = PEAK * MIN_RATIO


def lr(step=WARMUP, progress=0.0, kind="cosine", warmup=WARMUP, peak=PEAK, min_ratio=MIN_RATIO):
    return learning_rate(step, progress, peak, warmup, min_ratio, kind=kind)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_warmup_is_linear_from_peak_over_warmup_steps_to_peak(kind):
    assert lr(0, kind=kind) == pytest.approx(PEAK / WARMUP)
    assert lr(WARMUP - 1, kind=kind) == pytest.approx(PEAK)
    for step in range(WARMUP):
        assert lr(step, kind=kind) == pytest.approx(PEAK * (step + 1) / WARMUP)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_warmup_is_strictly_increasing_and_ignores_progress(kind):
    values = [lr(step, progress=0.7, kind=kind) for step in range(WARMUP)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert lr(3, progress=0.0, kind=kind) == lr(3, progress=1.0, kind=kind)


def test_cosine_endpoints_and_midpoint():
    assert lr(progress=0.0) == pytest.approx(PEAK)
    assert lr(progress=1.0) == pytest.approx(FLOOR)
    assert lr(progress=0.5) == pytest.approx((PEAK + FLOOR) / 2)


def test_cosine_shape_at_quarter_points():
    """0.5 * (1 + cos(pi/4)) = 0.8536 of the way from floor to peak at 0.25, 0.1464 at 0.75."""
    assert lr(progress=0.25) == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.8535533905932737)
    assert lr(progress=0.75) == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.14644660940672627)


def test_cosine_is_monotone_non_increasing():
    values = [lr(WARMUP + i, progress=i / 200) for i in range(201)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[0] > values[-1]


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_progress_is_clamped_to_0_1(kind):
    assert lr(progress=-0.5, kind=kind) == pytest.approx(PEAK)
    assert lr(progress=1.7, kind=kind) == pytest.approx(FLOOR)
    assert lr(progress=-0.5, kind=kind) == lr(progress=0.0, kind=kind)
    assert lr(progress=1.7, kind=kind) == lr(progress=1.0, kind=kind)


@pytest.mark.parametrize("progress", [-0.2, 0.0, 0.3, 0.5, 1.0, 1.5])
def test_constant_stays_at_peak_after_warmup(progress):
    assert lr(WARMUP + 5, progress=progress, kind="constant") == pytest.approx(PEAK)


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_linear_decays_linearly(progress):
    assert lr(progress=progress, kind="linear") == pytest.approx(PEAK - (PEAK - FLOOR) * progress)


def test_linear_quarter_points_are_evenly_spaced():
    a, b, c = (lr(progress=p, kind="linear") for p in (0.25, 0.5, 0.75))
    assert b - a == pytest.approx(c - b)
    assert b == pytest.approx((PEAK + FLOOR) / 2)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_zero_warmup_steps_means_no_warmup(kind):
    assert lr(0, progress=0.0, kind=kind, warmup=0) == pytest.approx(PEAK)
    assert lr(0, progress=0.5, kind=kind, warmup=0) == pytest.approx(lr(WARMUP, progress=0.5, kind=kind))


def test_min_ratio_one_is_flat_and_zero_decays_to_zero():
    assert lr(progress=0.6, min_ratio=1.0) == pytest.approx(PEAK)
    assert lr(progress=1.0, min_ratio=0.0) == pytest.approx(0.0, abs=1e-12)


def test_plateau_holds_the_peak_and_divides_it_at_each_plateau_whatever_the_progress():
    for progress in (0.0, 0.5, 1.0):
        assert lr(WARMUP, progress, kind="plateau") == PEAK
    assert learning_rate(50, 0.3, PEAK, WARMUP, MIN_RATIO, "plateau", decays=2, factor=0.5) == pytest.approx(PEAK / 4)
    assert learning_rate(3, 0.3, PEAK, WARMUP, MIN_RATIO, "plateau", decays=2) == pytest.approx(PEAK * 4 / WARMUP)
