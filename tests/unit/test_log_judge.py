"""Log templates and the new-template judge: literal records in, clusters and verdicts out."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil_common.verdicts import Sensitivity, Verdict
from vigil_log_analyzer.domain import (
    ClusterLabel,
    LogEvent,
    has_exception,
    judge_logs,
    template_id,
    template_of,
)

NPE_TRACE = (
    "Unhandled exception processing order 418207\n"
    "\tjava.lang.NullPointerException: "
    'Cannot invoke "Order.getCustomer()" because "order" is null\n'
    "\tat com.example.orders.OrderService.price(OrderService.java:88)\n"
    "\tat com.example.orders.OrderService.checkout(OrderService.java:54)\n"
    "\tat java.base/java.lang.Thread.run(Thread.java:833)"
)
CACHE_TIMEOUT = "Cache lookup timed out after 250 ms for key user:{key}"
REQUEST = "GET / 200 in {ms} ms request_id={uuid}"


def _events(host, level, message, count=1):
    return [LogEvent(host=host, level=level, message=message)] * count


def _requests(host, count):
    """``count`` request lines of ``host``, with varying latencies and request ids."""
    uuids = (f"{i:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b" for i in range(count))
    return [
        LogEvent(host, "INFO", REQUEST.format(ms=18 + i % 7, uuid=uuid))
        for i, uuid in enumerate(uuids)
    ]


@pytest.mark.parametrize(
    ("message", "template"),
    [
        (
            "GET / 200 in 23 ms request_id=6f1c0a4e-3b7d-4f51-9a5e-2b8c9d0e1f23",
            "GET / <NUM> in <DURATION> request_id=<*>",
        ),
        ("Lookup of 6f1c0a4e-3b7d-4f51-9a5e-2b8c9d0e1f23 failed", "Lookup of <UUID> failed"),
        ("Connected to 10.0.0.12:5432", "Connected to <IP>"),
        ("Retrying in 1.5s after 3 attempts", "Retrying in <DURATION> after <NUM> attempts"),
        (
            "Cache lookup timed out after 250 ms for key user:98121",
            "Cache lookup timed out after <DURATION> for key user:<NUM>",
        ),
        ("Could not read /var/lib/app/orders/123.json", "Could not read <PATH>"),
        ("Welcome mail to jane.doe@example.com bounced", "Welcome mail to <EMAIL> bounced"),
        ("Fetched https://api.example.com/v1/x?id=3 in 12ms", "Fetched <URL> in <DURATION>"),
        ("Segfault at 0x7ffe3a2b, build 9f8e7d6c5b", "Segfault at <HEX>, build <HEX>"),
        ("Unknown customer \"Jane Doe\" in 'eu-west-1'", "Unknown customer <STR> in <STR>"),
        ("user=alice retries=3 mode=fast", "user=<*> retries=<*> mode=<*>"),
        ("Job started at 2026-11-22T02:37:07.123Z", "Job started at <TIME>"),
        ("  lots   of\t spaces  ", "lots of spaces"),
        ("can't decide", "can't decide"),
    ],
)
def test_template_abstracts_variable_parts(message, template):
    assert template_of(message) == template


def test_java_stack_trace_keeps_message_exception_class_and_first_frame():
    assert template_of(NPE_TRACE) == (
        "Unhandled exception processing order <NUM> | java.lang.NullPointerException"
        " | at com.example.orders.OrderService.price(OrderService.java)"
    )


def test_stack_trace_line_numbers_do_not_change_the_template():
    moved = NPE_TRACE.replace("OrderService.java:88", "OrderService.java:91")

    assert template_of(moved) == template_of(NPE_TRACE)


def test_python_traceback_keeps_exception_class_and_innermost_frame():
    message = (
        "Request failed\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/app/handlers.py", line 10, in handle\n'
        "    price(order)\n"
        '  File "/srv/app/orders.py", line 88, in price\n'
        "    return order.total\n"
        "AttributeError: 'NoneType' object has no attribute 'total'"
    )

    assert template_of(message) == "Request failed | AttributeError | at orders.py in price"
    assert has_exception(message)


def test_plain_lines_carry_no_exception():
    assert not has_exception("Cache lookup timed out after 250 ms for key user:1")
    assert not has_exception("Error: disk almost full")
    assert has_exception(NPE_TRACE)


def test_template_ids_are_stable():
    template = "Cache lookup timed out after <DURATION> for key user:<NUM>"

    # The id is part of stored results: it must not change across runs or releases.
    assert template_id(template) == "b3103aa6a0a3"
    assert template_id(template_of(CACHE_TIMEOUT.format(key=1))) == "b3103aa6a0a3"
    assert len(template_id("")) == 12


@given(st.text())
def test_template_of_is_idempotent(message):
    template = template_of(message)

    assert template_of(template) == template


@given(
    st.sampled_from(["order {} failed", "took {} ms", "retry {} of 5", "key user:{}", "id={}"]),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=10**12),
)
def test_numbers_never_affect_the_template_id(pattern, first, second):
    assert template_id(template_of(pattern.format(first))) == template_id(
        template_of(pattern.format(second))
    )


def test_new_null_pointer_exception_fails():
    cache_timeout = CACHE_TIMEOUT.format(key=3)
    control = _requests("primary-1", 20) + _events("primary-1", "ERROR", cache_timeout)
    test = _requests("canary-1", 20) + _events("canary-1", "ERROR", NPE_TRACE, count=3)

    for sensitivity in Sensitivity:
        result = judge_logs(control, test, sensitivity)

        assert result.verdict is Verdict.FAIL
        assert result.analyzer == "new-template-v1"
        worst = result.findings[0]
        assert worst.rule == "new-error"
        assert worst.subject == template_id(template_of(NPE_TRACE))
        assert "java.lang.NullPointerException" in worst.reason
        assert 'e.g. "Unhandled exception processing order 418207"' in worst.reason
        assert worst.test_summary == {"canary-1": 3.0}
        assert worst.control_summary == {}
        assert result.reason.startswith("FAIL: new ERROR template")


def test_new_exception_fails_even_at_warn_level():
    test = _events("canary-1", "WARN", NPE_TRACE)

    result = judge_logs([], test, Sensitivity.LOW)

    assert result.verdict is Verdict.FAIL
    assert "new WARN with an exception template" in result.reason


def test_known_error_with_different_numbers_is_known():
    control = [LogEvent("primary-1", "ERROR", CACHE_TIMEOUT.format(key=k)) for k in (1201, 77)]
    test = [LogEvent("canary-1", "ERROR", CACHE_TIMEOUT.format(key=k)) for k in (90311, 4)]

    result = judge_logs(control, test, Sensitivity.HIGH)

    assert result.verdict is Verdict.PASS
    (cluster,) = result.clusters
    assert cluster.label is ClusterLabel.KNOWN
    assert (cluster.test_counts, cluster.control_counts) == ({"canary-1": 2}, {"primary-1": 2})
    assert result.findings[0].rule == "known"


def test_known_templates_count_as_known_without_control():
    test = _events("canary-1", "ERROR", CACHE_TIMEOUT.format(key=5))
    template = template_of(CACHE_TIMEOUT.format(key=1))

    by_template = judge_logs([], test, Sensitivity.HIGH, known_templates={template})
    by_id = judge_logs([], test, Sensitivity.HIGH, known_templates={template_id(template)})
    unknown = judge_logs([], test, Sensitivity.HIGH)

    assert by_template.verdict is Verdict.PASS
    assert by_id.verdict is Verdict.PASS
    assert unknown.verdict is Verdict.FAIL


def test_new_info_line_never_fails():
    control = _requests("primary-1", 5)
    test = _requests("canary-1", 5) + _events("canary-1", "INFO", "Feature flag fast-path on")

    for sensitivity in Sensitivity:
        result = judge_logs(control, test, sensitivity)

        assert result.verdict is Verdict.PASS
        new = [c for c in result.clusters if c.label is ClusterLabel.UNKNOWN]
        assert [c.template for c in new] == ["Feature flag fast-path on"]


# (level, sensitivity, expected verdict) for a template that is new in test.
NEW_TEMPLATE_TABLE = [
    ("ERROR", Sensitivity.HIGH, Verdict.FAIL),
    ("ERROR", Sensitivity.MEDIUM, Verdict.FAIL),
    ("ERROR", Sensitivity.LOW, Verdict.FAIL),
    ("FATAL", Sensitivity.LOW, Verdict.FAIL),
    ("WARN", Sensitivity.HIGH, Verdict.FAIL),
    ("WARNING", Sensitivity.HIGH, Verdict.FAIL),
    ("WARN", Sensitivity.MEDIUM, Verdict.PASS),
    ("WARN", Sensitivity.LOW, Verdict.PASS),
    ("INFO", Sensitivity.HIGH, Verdict.PASS),
    ("DEBUG", Sensitivity.HIGH, Verdict.PASS),
]


@pytest.mark.parametrize(("level", "sensitivity", "expected"), NEW_TEMPLATE_TABLE)
def test_new_template_table(level, sensitivity, expected):
    test = _events("canary-1", level, "Slow disk on volume data-7")

    result = judge_logs(_requests("primary-1", 3), test, sensitivity)

    assert result.verdict is expected, result.reason


# (control count, test count, sensitivity, expected label, expected verdict), one host a side.
FREQUENCY_TABLE = [
    (2, 7, Sensitivity.HIGH, ClusterLabel.UNEXPECTED_FREQUENCY, Verdict.FAIL),
    (2, 7, Sensitivity.MEDIUM, ClusterLabel.UNEXPECTED_FREQUENCY, Verdict.FAIL),
    (2, 7, Sensitivity.LOW, ClusterLabel.UNEXPECTED_FREQUENCY, Verdict.PASS),
    (2, 6, Sensitivity.HIGH, ClusterLabel.KNOWN, Verdict.PASS),  # exactly 3x is not more
    (1, 4, Sensitivity.HIGH, ClusterLabel.KNOWN, Verdict.PASS),  # fewer than 5 occurrences
    (10, 2, Sensitivity.HIGH, ClusterLabel.KNOWN, Verdict.PASS),  # fewer never fails
]


@pytest.mark.parametrize(("control", "test", "sensitivity", "label", "verdict"), FREQUENCY_TABLE)
def test_error_frequency_table(control, test, sensitivity, label, verdict):
    message = CACHE_TIMEOUT.format(key=1)

    result = judge_logs(
        _events("primary-1", "ERROR", message, control),
        _events("canary-1", "ERROR", message, test),
        sensitivity,
    )

    assert result.clusters[0].label is label
    assert result.verdict is verdict, result.reason


def test_frequency_is_compared_per_host():
    message = CACHE_TIMEOUT.format(key=1)
    control = _events("primary-1", "ERROR", message, 2)
    # 8 in test, but over 4 hosts: 2 per host, as in control.
    test = [e for h in ("c1", "c2", "c3", "c4") for e in _events(h, "ERROR", message, 2)]

    result = judge_logs(control, test, Sensitivity.HIGH)

    assert result.clusters[0].label is ClusterLabel.KNOWN
    assert result.findings[0].test_summary == {"c1": 2.0, "c2": 2.0, "c3": 2.0, "c4": 2.0}


def test_more_frequent_info_line_is_not_unexpected_frequency():
    result = judge_logs(_requests("primary-1", 2), _requests("canary-1", 40), Sensitivity.HIGH)

    assert result.clusters[0].label is ClusterLabel.KNOWN
    assert result.verdict is Verdict.PASS


def test_no_test_records_is_no_data():
    result = judge_logs(_requests("primary-1", 5), [], Sensitivity.HIGH)

    assert result.verdict is Verdict.NO_DATA
    assert result.clusters == ()
    assert result.reason == "NO_DATA: no test log records to analyze"


def test_clusters_are_ordered_by_frequency_and_findings_worst_first():
    test = (
        _requests("canary-1", 6)
        + _events("canary-1", "ERROR", NPE_TRACE)
        + _events("canary-2", "WARN", "Pool nearly exhausted", 2)
    )

    result = judge_logs(_requests("primary-1", 6), test, Sensitivity.HIGH)

    assert [c.test_total for c in result.clusters] == [6, 2, 1]
    assert [f.verdict for f in result.findings] == [Verdict.FAIL, Verdict.FAIL, Verdict.PASS]
    assert result.findings[0].rule == "new-error"
    assert "(and 1 more FAIL check)" in result.reason
    assert judge_logs(_requests("primary-1", 6), test, Sensitivity.HIGH) == result
