"""The plain threshold judge: literal series in, verdicts and reasons out."""

from dataclasses import replace

import pytest

from vigil_common.verdicts import Sensitivity, Verdict, combine
from vigil_metric_analyzer.domain import (
    Direction,
    MetricPolicy,
    PerSensitivity,
    VerificationPolicy,
    default_policies,
    judge_metrics,
    judge_thresholds_only,
)

LATENCY = "response_time_ms"
ERRORS = "error_rate_pct"
THROUGHPUT = "requests_per_interval"


def _policy(sensitivity=Sensitivity.MEDIUM, **overrides):
    """The demo policies, with single metrics replaced: ``response_time_ms={...}``."""
    metrics = default_policies()
    for name, changes in overrides.items():
        metrics[name] = replace(metrics[name], **changes)
    return VerificationPolicy(sensitivity=sensitivity, metrics=metrics)


def _only(name, sensitivity=Sensitivity.MEDIUM, **changes):
    """A policy judging just ``name``."""
    return VerificationPolicy(
        sensitivity=sensitivity, metrics={name: replace(default_policies()[name], **changes)}
    )


def _findings(result, subject):
    return [finding for finding in result.findings if finding.subject == subject]


# (metric, control series, test series, sensitivity, expected verdict)
COMPARISONS = [
    # The demo regression: about +60% latency.
    (LATENCY, [19.1, 20.4, 19.6, 20.2], [31.9, 32.4, 31.2, 32.8], Sensitivity.LOW, Verdict.FAIL),
    (LATENCY, [20.0, 20.0, 20.0], [20.4, 20.6, 20.5], Sensitivity.HIGH, Verdict.PASS),
    # +8% and +8 ms: under MEDIUM's 10%, over HIGH's 5% and 2 ms.
    (LATENCY, [100.0, 100.0, 100.0], [108.0, 108.0, 108.0], Sensitivity.HIGH, Verdict.FAIL),
    (LATENCY, [100.0, 100.0, 100.0], [108.0, 108.0, 108.0], Sensitivity.MEDIUM, Verdict.PASS),
    # +100% but only +1 ms: under every absolute floor.
    (LATENCY, [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], Sensitivity.HIGH, Verdict.PASS),
    # Error rate from 0: relative change is infinite, the percentage-point floor decides.
    (ERRORS, [0.0, 0.0, 0.0], [0.4, 0.4, 0.4], Sensitivity.HIGH, Verdict.PASS),
    (ERRORS, [0.0, 0.0, 0.0], [0.6, 0.6, 0.6], Sensitivity.HIGH, Verdict.FAIL),
    (ERRORS, [0.0, 0.0, 0.0], [1.5, 1.5, 1.5], Sensitivity.MEDIUM, Verdict.FAIL),
    (ERRORS, [0.0, 0.0, 0.0], [1.5, 1.5, 1.5], Sensitivity.LOW, Verdict.PASS),
    # Throughput is worse when it drops.
    (THROUGHPUT, [60.0, 61.0, 59.0], [30.0, 31.0, 29.0], Sensitivity.LOW, Verdict.FAIL),
    (THROUGHPUT, [60.0, 61.0, 59.0], [120.0, 121.0, 119.0], Sensitivity.HIGH, Verdict.PASS),
    # One spike does not move the median.
    (
        LATENCY,
        [20.0, 20.0, 20.0, 20.0, 20.0],
        [20.0, 20.0, 400.0, 20.0, 20.0],
        Sensitivity.HIGH,
        Verdict.PASS,
    ),
    # Missing intervals are skipped, not read as zero.
    (LATENCY, [20.0, None, 20.0, 20.0], [None, 35.0, 35.0, 35.0], Sensitivity.MEDIUM, Verdict.FAIL),
]


@pytest.mark.parametrize(("metric", "control", "test", "sensitivity", "expected"), COMPARISONS)
def test_comparison_table(metric, control, test, sensitivity, expected):
    result = judge_metrics(
        {metric: {"primary-1": control}},
        {metric: {"canary-1": test}},
        _only(metric, sensitivity),
    )

    assert result.verdict is expected, result.reason
    assert result.analyzer == "threshold-v1"


def test_canary_with_slower_response_time_fails():
    result = judge_metrics(
        {LATENCY: {"primary-1": [19.0, 19.3, 19.6]}},
        {LATENCY: {"canary-1": [31.0, 31.2, 31.9]}},
        _only(LATENCY),
    )

    assert result.verdict is Verdict.FAIL
    (finding,) = result.findings
    assert (finding.subject, finding.host, finding.rule) == (LATENCY, "canary-1", "median-change")
    assert "+62%" in finding.reason
    assert "31.2 ms vs 19.3 ms" in finding.reason
    assert finding.test_summary == {
        "median": 31.2,
        "mean": pytest.approx(31.3667, abs=1e-3),
        "count": 3.0,
    }
    assert finding.control_summary["median"] == 19.3
    assert result.reason.startswith("FAIL: response_time_ms on canary-1 +62%")


@pytest.mark.parametrize("sensitivity", list(Sensitivity))
@pytest.mark.parametrize(
    ("metric", "control", "test"),
    [
        (LATENCY, [40.0, 41.0, 40.0], [10.0, 11.0, 10.0]),
        (ERRORS, [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]),
        (THROUGHPUT, [10.0, 10.0, 10.0], [500.0, 500.0, 500.0]),
    ],
)
def test_improvement_never_fails(metric, control, test, sensitivity):
    zero_limits = PerSensitivity(high=0.0, medium=0.0, low=0.0)
    policy = _only(metric, sensitivity, relative_tolerance=zero_limits, absolute_floor=zero_limits)

    result = judge_metrics({metric: {"p": control}}, {metric: {"c": test}}, policy)

    assert result.verdict is Verdict.PASS
    assert "no worse than control" in result.findings[0].reason


def test_small_change_under_tolerance_passes_at_low_but_fails_at_high():
    control = {LATENCY: {"primary-1": [50.0, 50.0, 50.0]}}
    test = {LATENCY: {"canary-1": [56.0, 56.0, 56.0]}}  # +12%, +6 ms

    outcomes = {s: judge_metrics(control, test, _only(LATENCY, s)).verdict for s in Sensitivity}

    assert outcomes == {
        Sensitivity.HIGH: Verdict.FAIL,
        Sensitivity.MEDIUM: Verdict.FAIL,
        Sensitivity.LOW: Verdict.PASS,
    }
    low = judge_metrics(control, test, _only(LATENCY, Sensitivity.LOW)).findings[0]
    assert "within the LOW limits of 20% and 10.0 ms" in low.reason


def test_change_must_exceed_both_relative_tolerance_and_absolute_floor():
    policy = _only(LATENCY, Sensitivity.MEDIUM)
    above_relative_only = judge_metrics(
        {LATENCY: {"p": [2.0, 2.0, 2.0]}}, {LATENCY: {"c": [4.0, 4.0, 4.0]}}, policy
    )
    above_floor_only = judge_metrics(
        {LATENCY: {"p": [900.0, 900.0, 900.0]}}, {LATENCY: {"c": [960.0, 960.0, 960.0]}}, policy
    )

    assert above_relative_only.verdict is Verdict.PASS
    assert above_floor_only.verdict is Verdict.PASS


def test_missing_test_data_is_no_data_not_pass():
    control = {
        LATENCY: {"primary-1": [20.0, 20.0, 20.0]},
        ERRORS: {"primary-1": [0.0, 0.0, 0.0]},
    }
    test = {
        LATENCY: {"canary-1": [20.0, 20.0, 20.0], "canary-2": [20.0, 20.0, 20.0]},
        ERRORS: {"canary-1": [None, None, None], "canary-2": [0.0, 0.0, 0.0]},
    }

    result = judge_metrics(control, test, _policy())

    assert result.verdict is Verdict.NO_DATA
    assert result.verdict.blocks_release
    errors = {finding.host: finding for finding in _findings(result, ERRORS)}
    assert errors["canary-1"].verdict is Verdict.NO_DATA
    assert "no test data for error_rate_pct on canary-1" in errors["canary-1"].reason
    assert errors["canary-2"].verdict is Verdict.PASS
    throughput = {(f.host, f.verdict, f.reason) for f in _findings(result, THROUGHPUT)}
    assert throughput == {
        ("*", Verdict.NO_DATA, "no control data for requests_per_interval"),
        ("*", Verdict.NO_DATA, "no test data for requests_per_interval on any host"),
    }
    assert {f.verdict for f in _findings(result, LATENCY)} == {Verdict.PASS}


def test_metric_with_no_data_on_any_test_host_is_one_no_data_finding():
    result = judge_metrics(
        {ERRORS: {"primary-1": [0.0, 0.0, 0.0]}},
        {ERRORS: {"canary-1": [None, None]}},
        _only(ERRORS),
    )

    assert result.verdict is Verdict.NO_DATA
    (finding,) = result.findings
    assert (finding.subject, finding.host) == (ERRORS, "*")


def test_host_missing_from_one_metric_gets_no_data_for_it():
    control = {LATENCY: {"p": [20.0] * 3}, ERRORS: {"p": [0.0] * 3}}
    test = {LATENCY: {"c1": [20.0] * 3, "c2": [20.0] * 3}, ERRORS: {"c1": [0.0] * 3}}

    result = judge_metrics(control, test, _only(ERRORS))

    by_host = {finding.host: finding.verdict for finding in result.findings}
    assert by_host == {"c1": Verdict.PASS, "c2": Verdict.NO_DATA}


def test_fewer_points_than_min_points_is_no_data():
    result = judge_metrics(
        {LATENCY: {"p": [20.0, 20.0, 20.0]}},
        {LATENCY: {"c": [20.0, None, 20.0]}},
        _only(LATENCY, min_points=3),
    )

    assert result.verdict is Verdict.NO_DATA
    assert result.findings[0].rule == "min-points"
    assert "2 values, fewer than the 3 needed" in result.reason


def test_missing_control_data_is_no_data_naming_the_control_host():
    control = {LATENCY: {"primary-1": [20.0, 20.0, 20.0], "primary-2": [None, None, 21.0]}}
    test = {LATENCY: {"canary-1": [20.0, 20.0, 20.0]}}

    result = judge_metrics(control, test, _only(LATENCY))

    assert result.verdict is Verdict.NO_DATA
    by_host = {finding.host: finding for finding in result.findings}
    assert by_host["primary-2"].verdict is Verdict.NO_DATA
    assert "control host primary-2" in by_host["primary-2"].reason
    assert by_host["canary-1"].verdict is Verdict.PASS


def test_no_control_at_all_is_no_data_for_the_metric_and_each_test_host():
    result = judge_metrics({}, {LATENCY: {"canary-1": [20.0, 20.0, 20.0]}}, _only(LATENCY))

    assert result.verdict is Verdict.NO_DATA
    reasons = {(finding.host, finding.rule) for finding in result.findings}
    assert reasons == {("*", "no-data"), ("canary-1", "no-control")}


def test_fail_fast_threshold_fails_without_comparison():
    # The canary is no slower than control, but its mean is above the fail-fast threshold.
    result = judge_metrics(
        {LATENCY: {"primary-1": [1500.0, 1500.0, 1500.0]}},
        {LATENCY: {"canary-1": [1200.0, 1100.0]}},  # fewer than min_points: still fails
        _only(LATENCY, fail_fast_above=1000.0),
    )

    assert result.verdict is Verdict.FAIL
    (finding,) = result.findings
    assert finding.rule == "fail-fast"
    assert finding.control_summary == {}
    assert "mean 1150.0 ms is above the fail-fast threshold 1000.0 ms" in finding.reason


def test_all_values_under_ignore_threshold_pass_without_analysis():
    result = judge_metrics(
        {ERRORS: {"primary-1": [0.0, 0.0, 0.0]}},
        {ERRORS: {"canary-1": [0.2, 0.9, 0.4]}},
        _only(ERRORS, Sensitivity.HIGH, ignore_below=1.0),
    )

    assert result.verdict is Verdict.PASS
    assert result.findings[0].rule == "ignore-below"
    assert "all 3 values are below the ignore threshold 1.0%" in result.findings[0].reason


def test_values_under_ignore_threshold_are_left_out_of_the_comparison():
    result = judge_metrics(
        {ERRORS: {"primary-1": [0.0, 0.0, 0.0]}},
        {ERRORS: {"canary-1": [0.1, 4.0, 0.2, 5.0]}},
        _only(ERRORS, Sensitivity.MEDIUM, ignore_below=1.0),
    )

    assert result.verdict is Verdict.FAIL
    assert result.findings[0].test_summary["count"] == 2.0


def test_canary_fails_only_when_worse_than_every_control_host():
    control = {LATENCY: {"primary-1": [20.0] * 3, "primary-2": [40.0] * 3}}

    like_slow_primary = judge_metrics(control, {LATENCY: {"c": [41.0] * 3}}, _only(LATENCY))
    worse_than_both = judge_metrics(control, {LATENCY: {"c": [60.0] * 3}}, _only(LATENCY))

    assert like_slow_primary.verdict is Verdict.PASS
    assert "control primary-2" in like_slow_primary.findings[0].reason
    assert worse_than_both.verdict is Verdict.FAIL
    assert "worse than all 2 control hosts" in worse_than_both.reason


def test_every_canary_host_is_judged_separately():
    control = {LATENCY: {"primary-1": [20.0] * 3}}
    test = {LATENCY: {"canary-1": [20.0] * 3, "canary-2": [35.0] * 3}}

    result = judge_metrics(control, test, _only(LATENCY))

    assert result.verdict is Verdict.FAIL
    assert [(f.host, f.verdict) for f in result.findings] == [
        ("canary-2", Verdict.FAIL),
        ("canary-1", Verdict.PASS),
    ]
    assert "(and" not in result.reason


def test_metrics_outside_the_policy_are_not_judged():
    result = judge_metrics(
        {"cpu": {"p": [1.0] * 3}, LATENCY: {"p": [20.0] * 3}},
        {"cpu": {"c": [99.0] * 3}, LATENCY: {"c": [20.0] * 3}},
        _only(LATENCY),
    )

    assert result.verdict is Verdict.PASS
    assert {finding.subject for finding in result.findings} == {LATENCY}


def test_policy_without_metrics_is_inconclusive():
    policy = VerificationPolicy(sensitivity=Sensitivity.MEDIUM, metrics={})

    result = judge_metrics({}, {}, policy)

    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.findings[0].rule == "no-metrics"


def test_threshold_only_verification_checks_fail_fast_thresholds():
    test = {
        LATENCY: {"node-1": [200.0, 210.0, 190.0], "node-2": [1500.0, 1600.0, 1400.0]},
        ERRORS: {"node-1": [0.0, 0.0, 0.0]},
        THROUGHPUT: {"node-1": [1.0, 1.0, 1.0]},
    }

    result = judge_thresholds_only(test, _policy())

    verdicts = {(f.subject, f.host): f.verdict for f in result.findings}
    assert verdicts == {
        (LATENCY, "node-1"): Verdict.PASS,
        (LATENCY, "node-2"): Verdict.FAIL,
        (ERRORS, "node-1"): Verdict.PASS,
        (ERRORS, "node-2"): Verdict.NO_DATA,
    }
    assert result.verdict is Verdict.FAIL
    assert result.reason.startswith("FAIL: response_time_ms on node-2: mean 1500.0 ms")


def test_threshold_only_verification_without_thresholds_is_inconclusive():
    policy = VerificationPolicy(
        sensitivity=Sensitivity.MEDIUM,
        metrics={THROUGHPUT: default_policies()[THROUGHPUT]},
    )

    result = judge_thresholds_only({THROUGHPUT: {"node-1": [1.0, 1.0, 1.0]}}, policy)

    assert result.verdict is Verdict.INCONCLUSIVE
    assert "no metric has a fail_fast_above threshold" in result.reason


def test_same_inputs_give_the_same_result():
    control = {LATENCY: {"p2": [20.0] * 3, "p1": [21.0] * 3}}
    test = {LATENCY: {"c2": [30.0] * 3, "c1": [20.0] * 3}}

    assert judge_metrics(control, test, _policy()) == judge_metrics(control, test, _policy())


def test_default_policies_cover_the_demo_metrics():
    policies = default_policies()

    assert set(policies) == {LATENCY, ERRORS, THROUGHPUT}
    assert policies[THROUGHPUT].direction is Direction.LOWER_IS_WORSE
    assert policies[ERRORS].absolute_floor == PerSensitivity(high=0.5, medium=1.0, low=2.0)
    assert policies[LATENCY].relative_tolerance.at(Sensitivity.HIGH) == 0.05


def test_min_points_below_one_is_rejected():
    with pytest.raises(ValueError, match="min_points"):
        MetricPolicy(
            name="x",
            direction=Direction.HIGHER_IS_WORSE,
            absolute_floor=PerSensitivity(1.0, 1.0, 1.0),
            min_points=0,
        )


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], Verdict.NO_DATA),
        ([Verdict.PASS, Verdict.PASS], Verdict.PASS),
        ([Verdict.PASS, Verdict.INCONCLUSIVE], Verdict.INCONCLUSIVE),
        ([Verdict.INCONCLUSIVE, Verdict.NO_DATA], Verdict.NO_DATA),
        ([Verdict.NO_DATA, Verdict.FAIL, Verdict.PASS], Verdict.FAIL),
        ([Verdict.FAIL, Verdict.ERROR], Verdict.ERROR),
    ],
)
def test_combine_takes_the_worst_verdict(verdicts, expected):
    assert combine(verdicts) is expected


def test_only_pass_lets_a_release_through():
    assert [v for v in Verdict if not v.blocks_release] == [Verdict.PASS]
