"""The sax-robust-v5 metric judge: literal series in, verdicts, rules and reasons out."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil_common.verdicts import Sensitivity, Verdict
from vigil_metric_analyzer.domain import (
    ALPHA,
    ANALYZER,
    FINAL,
    Direction,
    Look,
    MetricKind,
    MetricPolicy,
    Mode,
    VerificationPolicy,
    default_policies,
    judge_metrics,
    judge_sensitivities,
    judge_thresholds_only,
    regressions,
)
from vigil_metric_analyzer.domain.scorers.looks import spent

HIGH, MEDIUM, LOW = Sensitivity.HIGH, Sensitivity.MEDIUM, Sensitivity.LOW
LATENCY = MetricPolicy("latency_ms", Direction.HIGHER_IS_WORSE, MetricKind.LATENCY, "ms")
ERRORS = MetricPolicy("errors_pct", Direction.HIGHER_IS_WORSE, MetricKind.ERROR_RATE, "%")
THROUGHPUT = MetricPolicy("rpm", Direction.LOWER_IS_WORSE, MetricKind.THROUGHPUT, "req")

# Twelve minutes of a ~100 ms endpoint with ~2 ms noise (literal, so tables stay readable).
BASE = [100, 102, 98, 101, 99, 103, 97, 100, 102, 98, 101, 99]
BASE2 = [101, 99, 100, 102, 98, 100, 101, 99, 103, 97, 100, 101]


def _judge(metric, control, test, sensitivity=MEDIUM, mode=Mode.CANARY, look=FINAL):
    policy = VerificationPolicy(sensitivity, {metric.name: metric}, mode=mode)
    return judge_metrics({metric.name: control}, {metric.name: test}, policy, look)


def _plus(values, delta):
    return [None if v is None else v + delta for v in values]


def _times(values, factor):
    return [None if v is None else v * factor for v in values]


# (metric, control hosts, test hosts, sensitivity, expected verdict, expected rule)
TABLE = [
    # +60% latency: fails everywhere, by the level-shift rule.
    (LATENCY, {"a": BASE, "b": BASE2}, {"c": _times(BASE, 1.6)}, LOW, Verdict.FAIL, "level-shift"),
    # The same data: a healthy canary passes.
    (LATENCY, {"a": BASE, "b": BASE2}, {"c": BASE2}, HIGH, Verdict.PASS, "level-shift"),
    # +8 ms (+8%, ~4 SDs): over HIGH's 5%/2 SDs, under MEDIUM's 10%.
    (LATENCY, {"a": BASE}, {"c": _plus(BASE2, 8)}, HIGH, Verdict.FAIL, "level-shift"),
    (LATENCY, {"a": BASE}, {"c": _plus(BASE2, 8)}, MEDIUM, Verdict.PASS, "level-shift"),
    # +15% but buried in noise of +-40 ms on each host (not the same minutes' noise: that
    # would cancel in the per-minute differences): not statistically clear, passes.
    (LATENCY, {"a": [60, 140, 70, 130, 100, 150, 50, 120, 80, 110]},
     {"c": [145, 75, 165, 85, 125, 115, 65, 155, 135, 95]}, MEDIUM, Verdict.PASS, "level-shift"),
    # Error rate from 0 to 1.5 pp: percentage points decide, not the infinite relative change.
    (ERRORS, {"a": [0.0] * 12}, {"c": [1.5, 1.4, 1.6, 1.5, 1.5, 1.4, 1.6, 1.5, 1.5, 1.5, 1.4, 1.6]},
     MEDIUM, Verdict.FAIL, "level-shift"),
    (ERRORS, {"a": [0.0] * 12}, {"c": [1.5, 1.4, 1.6, 1.5, 1.5, 1.4, 1.6, 1.5, 1.5, 1.5, 1.4, 1.6]},
     LOW, Verdict.PASS, "level-shift"),
    # Throughput is worse when it drops; a rise passes.
    (THROUGHPUT, {"a": BASE}, {"c": _times(BASE2, 0.5)}, LOW, Verdict.FAIL, "level-shift"),
    (THROUGHPUT, {"a": BASE}, {"c": _times(BASE2, 2.0)}, HIGH, Verdict.PASS, "level-shift"),
    # One 4x spike does not move the SAX word's median.
    (LATENCY, {"a": BASE}, {"c": BASE2[:5] + [400] + BASE2[6:]}, HIGH, Verdict.PASS,
     "level-shift"),
    # A spike in the same minute on both sides (canary: time-aligned) is not flagged.
    (LATENCY, {"a": BASE[:4] + [300, 310] + BASE[6:]}, {"c": BASE2[:4] + [305, 300] + BASE2[6:]},
     HIGH, Verdict.PASS, "level-shift"),
    # Missing minutes are skipped, not read as zero.
    (LATENCY, {"a": [100, None, 101, 99, None, 100, 102, 98, 100, 101]},
     {"c": [None, 150, 151, 149, 150, None, 152, 148, 150, 151]}, MEDIUM, Verdict.FAIL,
     "level-shift"),
    # A latency that climbs through the window (+0 -> +50 ms).
    (LATENCY, {"a": BASE}, {"c": [b + 4.5 * k for k, b in enumerate(BASE2)]}, MEDIUM,
     Verdict.FAIL, "level-shift"),
    # Same level, five times the noise and a worse p90.
    (LATENCY, {"a": BASE + BASE2}, {"c": [100, 112, 88, 115, 85, 110, 90, 118, 84, 100, 113, 86,
                                          111, 89, 116, 87, 100, 114, 85, 112, 88, 117, 86, 101]},
     HIGH, Verdict.FAIL, "spread-increase"),
    # Only three minutes of a clear +30% shift: too few to be clear, says how long to wait.
    (LATENCY, {"a": BASE[:3]}, {"c": [130, 131, 129]}, MEDIUM, Verdict.INCONCLUSIVE, "not-clear"),
    # Heterogeneous primaries (100 and 130 ms): a canary at 125 ms is within their spread.
    (LATENCY, {"a": BASE, "b": _plus(BASE2, 30)}, {"c": _plus(BASE, 25)}, MEDIUM, Verdict.PASS,
     "level-shift"),
]


@pytest.mark.parametrize(("metric", "control", "test", "sensitivity", "verdict", "rule"), TABLE)
def test_comparison_table(metric, control, test, sensitivity, verdict, rule):
    result = _judge(metric, control, test, sensitivity)
    finding = result.findings[0]
    assert (finding.verdict, finding.rule) == (verdict, rule), finding.reason
    assert result.analyzer == ANALYZER == "sax-robust-v5"


def test_failing_finding_explains_itself_with_summaries_deviation_and_rule():
    result = _judge(LATENCY, {"a": BASE, "b": BASE2}, {"canary-1": _times(BASE, 1.6)}, MEDIUM)
    f = result.findings[0]
    assert result.verdict is Verdict.FAIL and f.host == "canary-1"
    assert "latency_ms on canary-1: +60%" in f.reason and "noise SDs (SAX)" in f.reason
    assert "medium limits of 10% and 3 SDs" in f.reason
    assert f.control_summary["median"] == pytest.approx(100, abs=1)
    assert f.test_summary["deviation_sd"] >= 3 and f.test_summary["change_pct"] > 50
    assert f.test_summary["change_sds"] >= 3 and f.test_summary["change_se"] > 0
    assert f.test_summary["p_value"] < ALPHA
    assert 10 <= f.test_summary["change_lower_pct"] < f.test_summary["change_pct"]


def test_inconclusive_says_how_many_more_minutes_would_decide():
    f = _judge(LATENCY, {"a": BASE[:3]}, {"c": [130, 131, 129]}).findings[0]
    assert f.verdict is Verdict.INCONCLUSIVE
    assert "more minutes" in f.reason and f.test_summary["more_minutes_needed"] >= 1


def test_missing_test_data_is_no_data_not_pass():
    result = _judge(LATENCY, {"a": BASE}, {"c": [None] * 12})
    assert result.verdict is Verdict.NO_DATA and result.findings[0].rule == "no-data"


def test_too_few_values_is_no_data_and_says_how_much_more_traffic():
    f = _judge(LATENCY, {"a": BASE}, {"c": [100] + [None] * 9}).findings[0]
    assert (f.verdict, f.rule) == (Verdict.NO_DATA, "min-points")
    assert "about 20 more minutes" in f.reason


def test_no_control_data_is_no_data():
    f = _judge(LATENCY, {"a": [None] * 12}, {"c": BASE}).findings[0]
    assert (f.verdict, f.rule) == (Verdict.NO_DATA, "no-control")


def test_fail_fast_on_the_mean_fails_without_analysis():
    metric = replace(LATENCY, fail_fast_above=50.0)
    f = _judge(metric, {"a": BASE}, {"c": BASE}).findings[0]
    assert (f.verdict, f.rule) == (Verdict.FAIL, "fail-fast")


def test_fail_fast_on_consecutive_minutes():
    metric = replace(LATENCY, fail_fast_above=200.0, fail_fast_minutes=3)
    spikes = BASE[:4] + [250, 260, 255] + BASE[7:]
    assert _judge(metric, {"a": BASE}, {"c": spikes}).findings[0].rule == "fail-fast"
    broken = BASE[:4] + [250, None, 255] + BASE[7:]  # a missing minute breaks the run
    assert _judge(metric, {"a": BASE}, {"c": broken}).findings[0].rule != "fail-fast"


def test_all_values_under_the_ignore_threshold_pass_without_analysis():
    metric = replace(LATENCY, ignore_below=200.0)
    f = _judge(metric, {"a": BASE}, {"c": _times(BASE, 1.9)}).findings[0]
    assert (f.verdict, f.rule) == (Verdict.PASS, "ignore-below")


def test_threshold_only_verification():
    metric = replace(LATENCY, fail_fast_above=150.0)
    policy = VerificationPolicy(MEDIUM, {metric.name: metric})
    assert judge_thresholds_only({metric.name: {"c": BASE}}, policy).verdict is Verdict.PASS
    slow = judge_thresholds_only({metric.name: {"c": _times(BASE, 2)}}, policy)
    assert slow.verdict is Verdict.FAIL
    none = judge_thresholds_only({LATENCY.name: {"c": BASE}},
                                 VerificationPolicy(MEDIUM, {LATENCY.name: LATENCY}))
    assert none.verdict is Verdict.INCONCLUSIVE


def test_rolling_pre_post_carries_a_clear_daily_trend_forward():
    rising = [100 + 1.0 * k + (0.3 if k % 2 else -0.3) for k in range(12)]
    after = [100 + 1.0 * (k + 14) + (0.3 if k % 2 else -0.3) for k in range(12)]  # trend goes on
    result = _judge(LATENCY, {"n1": rising}, {"n1": after}, HIGH, mode=Mode.ROLLING)
    assert result.verdict is Verdict.PASS, result.reason


def test_load_test_drops_warmup_minutes():
    warm = [300, 200] + BASE[2:]
    assert _judge(LATENCY, {"svc": BASE}, {"svc": warm}, HIGH, mode=Mode.LOAD_TEST
                  ).verdict is Verdict.PASS


def test_early_looks_need_much_stronger_evidence():
    slow = _plus(BASE2, 8)
    assert _judge(LATENCY, {"a": BASE}, {"c": slow}, HIGH).verdict is Verdict.FAIL
    early = _judge(LATENCY, {"a": BASE}, {"c": slow}, HIGH, look=Look(0.3, 0.2))
    assert early.verdict is not Verdict.FAIL


def test_alpha_spending_never_exceeds_the_budget_however_many_looks():
    fractions = np.linspace(0.05, 1.0, 40)
    total = sum(Look(f, p).alpha for p, f in zip([0.0, *fractions[:-1]], fractions, strict=True))
    assert total == pytest.approx(ALPHA) and spent(0.3) < 1e-4


def test_sensitivities_share_one_measurement_and_nest():
    policy = VerificationPolicy(MEDIUM, {LATENCY.name: LATENCY})
    results = judge_sensitivities({LATENCY.name: {"a": BASE}},
                                  {LATENCY.name: {"c": _plus(BASE2, 8)}}, policy,
                                  [HIGH, MEDIUM, LOW])
    assert [results[s].verdict for s in (HIGH, MEDIUM, LOW)] == [Verdict.FAIL, Verdict.PASS,
                                                                 Verdict.PASS]
    assert regressions(results[HIGH]) == {LATENCY.name: True}


def test_demo_policies_fail_the_v2_canary_and_pass_v3():
    policy = VerificationPolicy(MEDIUM, default_policies())
    rng = np.random.default_rng(7)
    v1 = {h: list(20 + rng.normal(0, 0.5, 10)) for h in ("node-1", "node-2")}
    errors = {h: [0.0] * 10 for h in v1}
    rps = {h: list(20 + rng.normal(0, 1, 10)) for h in v1}
    control = {"response_time_ms": v1, "error_rate_pct": errors, "requests_per_interval": rps}
    v2 = {"response_time_ms": {"node-3": list(32 + rng.normal(0, 0.5, 10))},
          "error_rate_pct": {"node-3": list(rng.choice([5.0, 10.0, 15.0], 10))},
          "requests_per_interval": {"node-3": list(20 + rng.normal(0, 1, 10))}}
    v3 = {"response_time_ms": {"node-3": list(20 + rng.normal(0, 0.5, 10))},
          "error_rate_pct": {"node-3": [0.0] * 10},
          "requests_per_interval": {"node-3": list(20 + rng.normal(0, 1, 10))}}
    assert judge_metrics(control, v2, policy).verdict is Verdict.FAIL
    assert judge_metrics(control, v3, policy).verdict is Verdict.PASS


def test_same_inputs_give_the_same_result():
    args = ({"a": BASE, "b": BASE2}, {"c": _times(BASE, 1.3)})
    assert _judge(LATENCY, *args) == _judge(LATENCY, *args)


series_strategy = st.lists(st.floats(50, 150, allow_nan=False), min_size=6, max_size=20)


@settings(max_examples=60, deadline=None)
@given(control=series_strategy, noise=st.lists(st.floats(-5, 5), min_size=20, max_size=20),
       factor=st.floats(0.2, 1.0), sensitivity=st.sampled_from(list(Sensitivity)))
def test_an_improvement_never_fails(control, noise, factor, sensitivity):
    # Pointwise no worse, and scaled down: faster at every minute.
    test = [(v - abs(n)) * factor for v, n in zip(control, noise, strict=False)]
    result = _judge(LATENCY, {"a": control}, {"c": test}, sensitivity)
    assert result.verdict is not Verdict.FAIL, result.reason
    faster = [(v + abs(n)) / factor for v, n in zip(control, noise, strict=False)]
    result = _judge(THROUGHPUT, {"a": control}, {"c": faster}, sensitivity)
    assert result.verdict is not Verdict.FAIL, result.reason


@settings(max_examples=60, deadline=None)
@given(control=series_strategy, test=series_strategy, scale=st.sampled_from([0.001, 1000.0]),
       sensitivity=st.sampled_from(list(Sensitivity)))
def test_scaling_units_does_not_change_the_verdict(control, test, scale, sensitivity):
    before = _judge(LATENCY, {"a": control}, {"c": test}, sensitivity).findings[0]
    after = _judge(LATENCY, {"a": _times(control, scale)}, {"c": _times(test, scale)},
                   sensitivity).findings[0]
    assert (before.verdict, before.rule) == (after.verdict, after.rule)
