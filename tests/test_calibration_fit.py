"""The compute model's fit on synthetic timings: known fixed cost and scale recovered, residuals, noise flags."""

from __future__ import annotations

import math
import random

import pytest

from simulator.commands.calibrate_cuts import CutTiming, fit_cuts
from simulator.costs import compute_model
from simulator.costs.calibration_fit import NOISY_SPREAD, fit_steps, fit_units, spread
from simulator.costs.table_cache import table_for


def test_exact_line_is_recovered() -> None:
    p = [0.010, 0.020, 0.035, 0.050]
    m = [0.004 + 1.5 * x for x in p]  # 4 ms per step, FLOPs 1.5x slower than the unit timings said
    fit = fit_steps(p, m)
    assert fit.overhead_s == pytest.approx(0.004, rel=1e-9)
    assert fit.scale == pytest.approx(1.5, rel=1e-12)
    assert fit.rms_s == pytest.approx(0.0, abs=1e-15) and fit.max_rel < 1e-12


def test_least_squares_by_hand() -> None:
    # p = 1, 2, 3; m = 2, 3, 5: slope = Σ(p-2)(m-10/3) / Σ(p-2)² = (4/3 + 0 + 5/3) / 2 = 1.5, intercept 10/3 - 3 = 1/3.
    fit = fit_steps([1.0, 2.0, 3.0], [2.0, 3.0, 5.0])
    assert fit.scale == pytest.approx(1.5) and fit.overhead_s == pytest.approx(1 / 3)
    # residuals 2 - 11/6, 3 - 10/3, 5 - 29/6 = 1/6, -1/3, 1/6
    assert fit.residual_s == pytest.approx((1 / 6, -1 / 3, 1 / 6))
    assert fit.rms_s == pytest.approx(math.sqrt((1 / 36 + 1 / 9 + 1 / 36) / 3))
    assert fit.max_rel == pytest.approx((1 / 3) / 3.0)


def test_negative_intercept_falls_back_to_the_origin() -> None:
    # m = 2p - 1 would need a negative fixed cost: refit m = b·p with b = Σpm / Σp² = (1+6+15)/(1+4+9) = 22/14.
    fit = fit_steps([1.0, 2.0, 3.0], [1.0, 3.0, 5.0])
    assert fit.overhead_s == 0.0 and fit.scale == pytest.approx(22 / 14)


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        fit_steps([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        fit_steps([1.0, float("nan")], [1.0, 2.0])


def test_spread_is_iqr_over_median() -> None:
    assert spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx((4.0 - 2.0) / 3.0)
    assert spread([7.0]) == 0.0


def test_fit_on_synthetic_step_timings() -> None:
    """Steps generated from a known profile (2.5 ms per step, every unit 1.25x slower than its unit timing) with
    ±1 % noise: the fit gets the profile back and the simulator's own compute model then reproduces the steps."""
    table = table_for(8, 1, 10, 28, "pool_linear", 4)
    batch, overhead, scale = 32, 0.0025, 1.25
    rng = random.Random(0)
    unit_rates = {f"u{i}": 1.0e9 * (0.5 + 0.1 * i) for i in range(1, 10)} | {"classifier": 2.0e8}
    flops_per_s = 1.0e9
    true_rates = {k: r / scale for k, r in unit_rates.items()}

    def true_step(by_unit: compute_model.UnitFlops) -> float:  # independent of fit_cuts: by hand
        return overhead + sum(f / true_rates.get(k, flops_per_s / scale) for k, f in by_unit)

    cuts = []
    for cut in range(1, 9):
        client = compute_model.client_forward_flops(table, cut, batch) + compute_model.client_rest_flops(
            table, cut, batch
        )
        server = compute_model.server_step_flops(table, cut, batch)
        for part, by_unit in (("client", client), ("server", server)):
            t = true_step(by_unit)
            cuts.append(CutTiming(part, cut, tuple(t * (1 + rng.uniform(-0.01, 0.01)) for _ in range(9))))
    cal = fit_cuts(table, batch, cuts, unit_rates, flops_per_s)
    assert cal.fit.overhead_s == pytest.approx(overhead, abs=0.0005)  # ±1 % noise on steps of up to ~0.1 s
    assert cal.step_fit.scale == pytest.approx(scale, rel=0.01)
    assert cal.fit.max_rel < 0.02 and not cal.noisy
    for key, rate in cal.fitted_unit_rates.items():
        assert rate == pytest.approx(true_rates.get(key, flops_per_s / scale), rel=0.03), key
    # The fitted profile, through the simulator's compute model, predicts each step within the noise.
    for c in cuts:
        flops = (
            (
                compute_model.client_forward_flops(table, c.cut, batch)
                + compute_model.client_rest_flops(table, c.cut, batch)
            )
            if c.part == "client"
            else compute_model.server_step_flops(table, c.cut, batch)
        )
        got = compute_model.part_seconds(
            flops, compute_model.total(flops), cal.fitted_flops_per_s, cal.fitted_unit_rates, cal.fit.overhead_s
        )
        assert got == pytest.approx(c.median_s, rel=0.02)
    # A single whole-model rate cannot: the small cut-1 client step is far off.
    first = cuts[0]
    assert abs(cal.plain_s[0] - first.median_s) / first.median_s > 0.3


def test_noisy_steps_are_flagged() -> None:
    table = table_for(8, 1, 10, 28, "pool_linear", 4)
    steady = CutTiming("client", 1, (1.0, 1.0, 1.0, 1.01))
    noisy = CutTiming("server", 1, (1.0, 1.5, 2.0, 2.5))
    assert noisy.spread > NOISY_SPREAD >= steady.spread
    cal = fit_cuts(table, 32, [steady, noisy], {}, 1.0e9)
    assert cal.noisy == [noisy]


def test_unit_fit_finds_rates_the_unit_timings_got_wrong() -> None:
    """Steps made from u1 at 2 ns/FLOP, u2 at 1 ns/FLOP and 1 ms per step; the priors (isolated unit timings) are
    30 % off in opposite directions: the steps, which see each unit in several combinations, win."""
    rows = [{"u1": 1e6}, {"u1": 1e6, "u2": 2e6}, {"u2": 2e6}, {"u1": 1e6, "u2": 4e6}, {"u2": 6e6}]
    true = {"u1": 2e-9, "u2": 1e-9}
    measured = [0.001 + sum(f * true[k] for k, f in r.items()) for r in rows]
    fit = fit_units(rows, measured, {"u1": 1.3 * 2e-9, "u2": 0.7 * 1e-9}, 0.0005, prior_weight=1e-4)
    assert fit.s_per_flop == pytest.approx(true, rel=1e-3)
    assert fit.overhead_s == pytest.approx(0.001, rel=1e-3) and fit.max_rel < 1e-3
    # Bounds: a fixed cost is never negative, a unit never faster than floor × its prior.
    neg = fit_units([{"u1": 1e6}, {"u1": 2e6}], [0.0015, 0.004], {"u1": 2e-9}, 0.0)
    assert neg.overhead_s == 0.0 and neg.s_per_flop["u1"] > 0
    with pytest.raises(ValueError):
        fit_units([{"u1": 1.0}], [0.0], {"u1": 1e-9}, 0.0)
