"""sax-robust-v4's statistics: pooled autocorrelation, standard errors, the group rules."""

import numpy as np
import pytest

from vigil_common.verdicts import Sensitivity, Verdict
from vigil_metric_analyzer.domain import (
    Direction,
    MetricKind,
    MetricPolicy,
    Mode,
    VerificationPolicy,
    judge_metrics,
)
from vigil_metric_analyzer.domain.detectors.comparison import baseline, measure
from vigil_metric_analyzer.domain.preprocessing import robust

LATENCY = MetricPolicy("latency_ms", Direction.HIGHER_IS_WORSE, MetricKind.LATENCY, "ms")


def _ar1(rng, n, phi):
    out = np.empty(n)
    out[0] = rng.normal()
    for k in range(1, n):
        out[k] = phi * out[k - 1] + np.sqrt(1 - phi**2) * rng.normal()
    return out


@pytest.mark.parametrize("phi", [0.0, 0.5])
def test_pooled_inflation_undoes_the_short_window_bias(phi):
    # Ten 15-minute hosts of AR(1) noise: the plain lag-1 estimate reads ~0.24 for phi = 0.5;
    # the pooled, bias-corrected one is near the truth, so the inflation is near (1+phi)/(1-phi).
    rng = np.random.default_rng(3)
    times = np.arange(15, dtype=float)
    estimates = [robust.pooled_inflation([(times, _ar1(rng, 15, phi)) for _ in range(10)])
                 for _ in range(200)]
    expected = (1 + phi) / (1 - phi)
    assert np.median(estimates) == pytest.approx(expected, rel=0.25)


def test_pooled_inflation_needs_enough_consecutive_minutes():
    times = np.arange(10, dtype=float)
    two_short_hosts = [(times, np.sin(times)), (times, np.cos(times))]
    assert robust.pooled_inflation(two_short_hosts) is None


def test_a_carried_trend_widens_the_standard_error_by_its_extrapolation():
    # The same control level, once with a carried slope and once without: the slope's error,
    # extrapolated to the test window, must be in the change's standard error.
    control = np.array([100.0 + 0.8 * k + (1.5 if k % 3 else -2.0) for k in range(15)])
    test = control + 30.0
    flat = measure(baseline([control], carry_trend=False, trend=(0.0, 0.0)), test, 1.0, False)
    carried = measure(baseline([control], carry_trend=False, trend=(0.8, 0.2)), test, 1.0,
                      False)
    assert carried.trend_sd > 0 and carried.shift_se > flat.shift_se


def test_host_spread_is_in_a_canary_p_value():
    # Primaries 100 and 112 ms, a canary at 118 ms: clear against the minutes (rank test),
    # not against how far apart whole hosts sit.
    rng = np.random.default_rng(5)
    a, b = 100 + rng.normal(0, 1, 15), 112 + rng.normal(0, 1, 15)
    c = 118 + rng.normal(0, 1, 15)
    compared = measure(baseline([a, b], carry_trend=False), c, 1.0, True)
    assert compared.between_sd > 10
    assert compared.shift_p > 0.01 or np.isnan(compared.shift_p)


def _canary(shift, rng, hosts=5, noise=0.12):
    """Five primaries and five canaries whose hosts differ by 4% and whose minutes wobble by
    ``noise``: each canary ``shift`` slower."""
    control = {f"p{k}": list(300 * (1 + rng.normal(0, 0.04)) * (1 + noise * _ar1(rng, 15, .5)))
               for k in range(hosts)}
    test = {f"c{k}": list(300 * (1 + shift) * (1 + rng.normal(0, 0.04))
                          * (1 + noise * _ar1(rng, 15, .5))) for k in range(hosts)}
    return control, test


def _low(control, test):
    policy = VerificationPolicy(Sensitivity.LOW, {LATENCY.name: LATENCY}, mode=Mode.CANARY)
    return judge_metrics({LATENCY.name: control}, {LATENCY.name: test}, policy)


def test_a_shared_30_percent_regression_fails_low_by_the_group_rule():
    # 30% on every canary in 12% minute noise is ~2.5 per-minute SDs per host (under LOW's 5),
    # but the same on all five hosts: the group rule sees it.
    caught = 0
    for seed in range(10):
        result = _low(*_canary(0.30, np.random.default_rng(seed)))
        group = [f for f in result.findings if f.host == "*"]
        assert len(group) == 1
        caught += group[0].verdict is Verdict.FAIL and group[0].rule == "group-shift"
    assert caught >= 8


def test_one_slow_canary_does_not_fail_the_group():
    rng = np.random.default_rng(11)
    control, test = _canary(0.0, rng)
    test["c0"] = [v * 1.6 for v in test["c0"]]  # a slow host, not the version
    result = _low(control, test)
    [group] = [f for f in result.findings if f.host == "*"]
    assert group.verdict is Verdict.PASS and group.rule == "group-shift"


def test_group_rules_split_alpha_over_metrics_and_rules():
    rng = np.random.default_rng(2)
    control, test = _canary(0.0, rng)
    policy = VerificationPolicy(Sensitivity.LOW, {LATENCY.name: LATENCY}, mode=Mode.CANARY)
    result = judge_metrics({LATENCY.name: control}, {LATENCY.name: test}, policy)
    [group] = [f for f in result.findings if f.host == "*"]
    assert group.test_summary["alpha"] == pytest.approx(0.01 / 3)
