"""sax-robust-v5's statistics: pooled autocorrelation, standard errors, the group rules."""

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


# --- v4: minimum-effect test, Welch degrees of freedom, spike-robust autocorrelation -------

def test_beyond_p_tests_against_the_practical_size_not_zero():
    from vigil_metric_analyzer.domain.classifiers.host import beyond_p, lower_bound

    assert beyond_p(5.0, 1.0, 5.0) == pytest.approx(0.5)  # exactly at the size: a coin flip
    assert beyond_p(6.0, 1.0, 5.0) == pytest.approx(0.1587, abs=1e-3)
    assert beyond_p(8.0, 1.0, 5.0) < 0.01 < beyond_p(7.0, 1.0, 5.0)
    assert lower_bound(8.0, 1.0, 0.01) == pytest.approx(8.0 - 2.3263, abs=1e-3)


def test_a_change_just_over_the_size_but_not_clearly_beyond_it_does_not_fail():
    # +5.5% against one control host in ~1.6 ms noise: far from 0 (p tiny), over HIGH's 5%,
    # but its 99% lower bound (~+3.5%) is under 5%: a true +4% could read like this.
    base = [100, 102, 98, 101, 99, 103, 97, 100, 102, 98, 101, 99]
    other = [101, 99, 100, 102, 98, 100, 101, 99, 103, 97, 100, 101]
    policy = VerificationPolicy(Sensitivity.HIGH, {LATENCY.name: LATENCY}, mode=Mode.CANARY)
    result = judge_metrics({LATENCY.name: {"a": base}},
                           {LATENCY.name: {"c": [v + 5.5 for v in other]}}, policy)
    f = result.findings[0]
    assert f.verdict is not Verdict.FAIL, f.reason
    assert (f.verdict, f.rule) == (Verdict.INCONCLUSIVE, "not-clear")
    assert "not clearly beyond" in f.reason and f.test_summary["p_value"] < 0.01
    # Clearly beyond: +9% in the same noise fails, and says how sure it is.
    result = judge_metrics({LATENCY.name: {"a": base}},
                           {LATENCY.name: {"c": [v + 9.0 for v in other]}}, policy)
    assert result.verdict is Verdict.FAIL and "with 99% confidence" in result.findings[0].reason


def test_spread_rule_needs_the_sd_ratio_clearly_beyond_the_limit():
    from dataclasses import replace as dc_replace

    from vigil_metric_analyzer.domain.classifiers.host import classify
    from vigil_metric_analyzer.domain.sensitivity import limits

    rng = np.random.default_rng(4)
    c = measure(baseline([100 + rng.normal(0, 1, 15)], carry_trend=False),
                100 + rng.normal(0, 1, 15), 1.0, True)
    # Measured x3.3 at MEDIUM (limit 3), rank test clear, bad tail worse.
    noisy = dc_replace(c, sd_ratio=3.3, spread_se=0.3, spread_p=1e-4, tail_change=5.0)
    sharp = dc_replace(noisy, spread_se=0.02)
    medium = Sensitivity.MEDIUM
    assert classify(LATENCY, "c", noisy, medium, limits(medium), 0.01).verdict is Verdict.PASS
    decided = classify(LATENCY, "c", sharp, medium, limits(medium), 0.01)
    assert (decided.verdict, decided.rule) == (Verdict.FAIL, "spread-increase")


def test_spread_se_grows_with_autocorrelation_and_host_heterogeneity():
    from vigil_metric_analyzer.domain.detectors.comparison import log_sd_var

    assert log_sd_var(15, 3.0) > log_sd_var(15, 1.0) == pytest.approx(1.35 / 15)
    rng = np.random.default_rng(8)
    alike = [100 + rng.normal(0, 1, 15) for _ in range(5)]
    unlike = [100 + rng.normal(0, s, 15) for s in (0.5, 1, 2, 4, 8)]
    test = 100 + rng.normal(0, 1, 15)
    assert (measure(baseline(unlike, carry_trend=False), test, 1.0, True).spread_se
            > measure(baseline(alike, carry_trend=False), test, 1.0, True).spread_se)


def test_group_t_uses_welch_satterthwaite_degrees_of_freedom():
    from vigil_metric_analyzer.domain.detectors.group import _t_mean

    values = np.array([1.0, 2.0, 3.0, 2.0, 2.5])
    own = float(np.var(values, ddof=1)) / 5
    # Shared error as large as the hosts' own, from 5 control hosts: about 8 df, not 4.
    _, _, df = _t_mean(values, [0.0] * 5, own, shared_df=4)
    assert df == pytest.approx(8.0, rel=0.01)
    _, _, paired_df = _t_mean(values, [0.0] * 5, 0.0)
    assert paired_df == 4.0


def test_pooled_inflation_is_not_fooled_by_spikes():
    # AR(0.5) minutes (inflation 3) with one 4x spike (~60 SDs) on every host: unclipped, the
    # spikes' squares swamp the lag-1 products and read ~1.2 (nearly independent minutes, as
    # v3 did); winsorized at 3 robust SDs ~1.7 - still low (a clipped spike still breaks two
    # products), but the minutes are no longer taken as nearly independent.
    rng = np.random.default_rng(6)
    times = np.arange(15, dtype=float)
    estimates = []
    for _ in range(100):
        hosts = []
        for _ in range(10):
            v = 50 * (1 + 0.05 * _ar1(rng, 15, 0.5))
            v[int(rng.integers(0, 15))] *= 4
            hosts.append((times, v))
        estimates.append(robust.pooled_inflation(hosts))
    assert 1.5 < np.median(estimates) < 3.3


# --- v5: group minimum-effect test in before/after modes, moderated between-host spread ----


def _group(change, change_se, df=9.0):
    from vigil_metric_analyzer.domain.detectors.group import GroupComparison

    return GroupComparison(
        hosts=10, control_hosts=10, paired=True, control_level=100.0, change=change,
        change_se=change_se, change_df=df, drift_end=0.0, drift_se=1.0, drift_df=df,
        slope=0.0, slope_se=1.0, slope_df=df, log_ratio=0.0, spread_se=0.1, spread_df=df,
        tail_change=0.0, deviating=10)


def test_group_minimum_effect_test_needs_the_bound_beyond_the_size():
    from vigil_metric_analyzer.domain.classifiers.group import classify_group
    from vigil_metric_analyzer.domain.sensitivity import limits

    high = Sensitivity.HIGH
    # +6% on every host, SE 0.5%: far from zero (t = 12), over HIGH's 5%, but its 99% lower
    # bound (6 - 2.82 x 0.5 = 4.6%) is not beyond 5%: a between-window change of +4% reads so.
    g = _group(6.0, 0.5)
    against_zero = classify_group(LATENCY, g, high, limits(high), 0.01 / 3)
    assert (against_zero.verdict, against_zero.rule) == (Verdict.FAIL, "group-shift")
    beyond = classify_group(LATENCY, g, high, limits(high), 0.01 / 3, size_alpha=0.01)
    assert beyond.verdict is Verdict.PASS
    clear = classify_group(LATENCY, _group(8.0, 0.5), high, limits(high), 0.01 / 3,
                           size_alpha=0.01)
    assert clear.verdict is Verdict.FAIL and "with 99% confidence" in clear.reason


@pytest.mark.parametrize("mode, applied", [(Mode.CANARY, False), (Mode.ROLLING, True),
                                           (Mode.BLUE_GREEN, True), (Mode.LOAD_TEST, True)])
def test_group_minimum_effect_test_only_in_before_after_modes(mode, applied):
    from vigil_metric_analyzer.domain.judge import _group_size_alpha

    policy = VerificationPolicy(Sensitivity.HIGH, {LATENCY.name: LATENCY}, mode=mode)
    assert (_group_size_alpha(policy, 0.01) == 0.01) is applied
    assert applied or _group_size_alpha(policy, 0.01) is None


def test_rolling_time_change_under_the_size_does_not_fail_the_group():
    # Ten hosts, every one +6% (+-1.5%) in the post window: between windows traffic moved;
    # clearly not zero, but not clearly beyond HIGH's 5% either.
    rng = np.random.default_rng(7)
    before, after = {}, {}
    for k in range(10):
        level = 300 * (1 + rng.normal(0, 0.04))
        before[f"n{k}"] = list(level * (1 + 0.02 * rng.normal(size=15)))
        after[f"n{k}"] = list(level * (1.06 + rng.normal(0, 0.015))
                              * (1 + 0.02 * rng.normal(size=15)))
    policy = VerificationPolicy(Sensitivity.HIGH, {LATENCY.name: LATENCY}, mode=Mode.ROLLING)
    result = judge_metrics({LATENCY.name: before}, {LATENCY.name: after}, policy)
    [group] = [f for f in result.findings if f.host == "*"]
    assert group.verdict is Verdict.PASS, group.reason
    assert group.test_summary["p_value"] < group.test_summary["alpha"]  # clear vs zero


def test_prior_of_variances_from_one_spread_is_that_spread():
    from vigil_metric_analyzer.domain.detectors.between import prior

    rng = np.random.default_rng(3)
    variances = 0.04**2 * rng.chisquare(4, 400) / 4
    s0, d0 = prior(list(variances), [4.0] * 400)
    assert np.sqrt(s0) == pytest.approx(0.04, rel=0.1)
    assert d0 > 50  # no spread beyond chi-square sampling
    # Truly different spreads: a finite prior df.
    mixed = np.concatenate([variances[:200], 16 * variances[200:]])
    assert prior(list(mixed), [4.0] * 400)[1] < 10
    assert prior([0.01, 0.02], [4.0, 4.0]) is None  # too few to estimate


def _memory(levels, minutes=15, noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    return {f"p{k}": list(lv * (1 + noise * rng.normal(size=minutes)))
            for k, lv in enumerate(levels)}


def test_tight_primaries_are_moderated_toward_the_verifications_host_spread():
    from vigil_metric_analyzer.domain.detectors.between import moderate

    rng = np.random.default_rng(1)
    spread = [baseline([np.array(v) for v in _memory(
        1000 * (1 + rng.normal(0, 0.04, 5)), seed=s).values()], carry_trend=False)
        for s in range(5)]
    tight = baseline([np.array(v) for v in _memory(
        [1000, 1020, 980, 1010, 990]).values()], carry_trend=False)
    kinds = [MetricKind.MEMORY] * 6
    moderated = moderate([tight, *spread], kinds)
    assert tight.between_raw / 1000 < 0.02
    assert moderated[0].between_raw > 1.3 * tight.between_raw  # toward the others
    assert moderated[0].between > tight.between
    # Alone (or with too few others) it keeps its own estimate.
    assert moderate([tight, *spread[:1]], kinds[:2])[0].between_raw == tight.between_raw


def test_a_canary_on_an_ordinary_host_does_not_fail_against_accidentally_tight_primaries():
    memory = MetricPolicy("memory_mb", Direction.HIGHER_IS_WORSE, MetricKind.MEMORY, "MB")
    tight = _memory([1000, 1010, 990, 1005, 995])
    canaries = _memory([1090, 1085, 1095, 1000, 1005], seed=9)  # three hosts +9%
    rng = np.random.default_rng(2)
    control, test = {memory.name: tight}, {memory.name: canaries}
    metrics = {memory.name: memory}
    for m in range(5):  # other metrics of the verification: hosts ~4% apart
        other = MetricPolicy(f"memory_{m}", Direction.HIGHER_IS_WORSE, MetricKind.MEMORY, "MB")
        metrics[other.name] = other
        control[other.name] = _memory(500 * (1 + rng.normal(0, 0.04, 5)), seed=20 + m)
        test[other.name] = _memory(500 * (1 + rng.normal(0, 0.04, 5)), seed=40 + m)
    alone = judge_metrics({memory.name: tight}, {memory.name: canaries},
                          VerificationPolicy(Sensitivity.HIGH, {memory.name: memory},
                                             mode=Mode.CANARY))
    pooled = judge_metrics(control, test,
                           VerificationPolicy(Sensitivity.HIGH, metrics, mode=Mode.CANARY))
    assert any(f.verdict is Verdict.FAIL
               for f in alone.findings if f.subject == memory.name)
    assert not any(f.verdict is Verdict.FAIL for f in pooled.findings
                   if f.subject == memory.name)
