"""Log analysis (log-clusters-v2): literal records in, clusters, labels and verdicts out."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil_common.verdicts import Sensitivity, Verdict
from vigil_log_analyzer.domain import (
    ANALYZER,
    Clusterer,
    ClusterLabel,
    Feedback,
    LogEvent,
    Risk,
    judge_logs,
    parse_records,
    replay_logs,
    signature_of,
    split_header,
    tokens_of,
)

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NPE = ("Unhandled exception processing order {n}\n"
       "\tjava.lang.NullPointerException: Cannot invoke \"Order.getCustomer()\"\n"
       "\tat com.example.orders.OrderService.price(OrderService.java:{line})\n"
       "\tat com.example.orders.OrderService.checkout(OrderService.java:54)")
IAE = NPE.replace("NullPointerException", "IllegalArgumentException")
PY_TRACE = ("Task failed for tenant {tenant}\n"
            "Traceback (most recent call last):\n"
            '  File "/srv/app/jobs.py", line {line}, in run\n'
            "    charge(order)\n"
            "KeyError: 'customer'")


def _spread(host, level, message_of, count, minutes=5):
    """``count`` events of ``host`` spread evenly over ``minutes`` minutes from T0."""
    return [LogEvent(host, level, message_of(i), T0 + timedelta(seconds=i * minutes * 60 // count))
            for i in range(count)]


def _requests(host, count=50):
    return _spread(host, "INFO", lambda i: f"GET /orders/{i} 200 in {i % 9 + 3} ms", count)


def _errors(host, count, template=NPE):
    return _spread(host, "ERROR", lambda i: template.format(n=1000 + i, line=88 + i % 2,
                                                             tenant="acme"), count)


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "level", "logger", "message"), [
    ("2026-11-22T02:37:07.123Z ERROR [http-exec-3] demo.orders - Order 5 failed",
     "ERROR", "demo.orders", "Order 5 failed"),
    ("2026-11-22 02:37:07,123 WARNING app.db: slow query on table users",
     "WARNING", "app.db", "slow query on table users"),
    ("Jul  9 11:35:59 combo sshd(pam_unix)[23029]: session opened for user news",
     "", "", "combo sshd(pam_unix)[23029]: session opened for user news"),
    ("INFO: server started", "INFO", "", "server started"),
    ("just a message", "", "", "just a message"),
])
def test_header_is_split_from_the_message(line, level, logger, message):
    record = split_header(line)
    assert (record.level, record.logger, record.message) == (level, logger, message)


def test_stack_trace_lines_stay_with_their_record():
    lines = ["2026-11-22T02:37:07.123Z ERROR [x] demo.orders - Unhandled exception",
             "java.lang.IllegalStateException: boom",
             "\tat com.example.A.b(A.java:12)",
             "Caused by: java.io.IOException: closed",
             "\t... 3 more",
             "2026-11-22T02:37:08.000Z INFO [main] demo.http - GET / 200"]
    records = parse_records(lines)
    assert [r.level for r in records] == ["ERROR", "INFO"]
    assert records[0].message.count("\n") == 4


@pytest.mark.parametrize(("first", "second"), [
    ("Connected to 10.0.0.12:5432 in 35 ms", "Connected to 10.1.7.3:6543 in 2 ms"),
    ("Lookup of 6f1c0a4e-3b7d-4f51-9a5e-2b8c9d0e1f23 failed",
     "Lookup of 0a1b2c3d-0000-4f51-9a5e-2b8c9d0e1f24 failed"),
    ("Could not read /var/lib/app/orders/123.json", "Could not read /tmp/x/y.json"),
    ("Mail to jane@example.com bounced", "Mail to bob.smith@corp.example.org bounced"),
    ("Fetched https://api.example.com/v1?id=3", "Fetched http://x.org/a/b"),
    ("Segfault at 0x7ffe3a2b", "Segfault at 0xdeadbeef00"),
    ("took 1.5s (12 KB)", "took 250ms (3 MB)"),
])
def test_variable_values_do_not_change_the_tokens(first, second):
    assert tokens_of(first) == tokens_of(second)


def test_trace_signature_ignores_line_numbers_and_keeps_class_and_frame():
    first = signature_of(NPE.format(n=1, line=88))
    assert first == signature_of(NPE.format(n=2, line=91))
    assert "java.lang.NullPointerException" in first
    assert first != signature_of(IAE.format(n=1, line=88))


# -- clustering ------------------------------------------------------------------------


def test_word_valued_fields_join_one_cluster():
    clusterer = Clusterer()
    users = ["alice", "bob", "carol", "dave", "erin", "frank"]
    ids = clusterer.assign([signature_of(f"session opened for user {u} by LOGIN")
                            for u in users])
    assert len(set(ids)) == 1


def test_statements_of_the_same_length_stay_apart():
    clusterer = Clusterer()
    lines = [f"Starting service {i}" for i in range(5)] + [
        f"Stopping service {i}" for i in range(5)]
    ids = clusterer.assign([signature_of(x) for x in lines])
    assert len(set(ids[:5])) == 1 and len(set(ids[5:])) == 1 and ids[0] != ids[5]


def test_a_mostly_variable_message_does_not_fragment_over_a_stream():
    """Drain's flaw: "key=<*>" lines with several word values start new clusters forever."""
    clusterer = Clusterer()
    words = ["north", "south", "east", "west", "up", "down", "left", "right", "in", "out"]
    seen = set()
    for batch in range(30):
        lines = [f"route {words[(batch + i) % 10]} via {words[(batch * 3 + i) % 10]} ok"
                 for i in range(7)]
        seen.update(clusterer.resolve(c) for c in clusterer.assign(
            [signature_of(x) for x in lines]))
    assert len({clusterer.resolve(c) for c in seen}) == 1


def test_ids_are_stable_across_runs_and_merges_keep_the_oldest_id():
    first = Clusterer()
    [a] = set(first.assign([signature_of("Cache warmed for tenant acme")] * 3))
    first.assign([signature_of(f"Cache warmed for tenant {t}") for t in
                  ("globex", "initech", "umbrella", "hooli")])
    assert {first.resolve(c) for c in first.assign(
        [signature_of("Cache warmed for tenant soylent")])} == {a}
    again = Clusterer()
    again.seed(first.signatures(), first.aliases())
    assert again.assign([signature_of("Cache warmed for tenant vandelay")]) == [a]


def test_memory_is_bounded_by_max_signatures():
    clusterer = Clusterer(max_signatures=50)
    for i in range(200):
        clusterer.assign([signature_of(f"opened file{chr(97 + i % 26)}{chr(97 + i // 26)} ok")])
    assert len(clusterer.signatures()) <= 50


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([
    "GET /orders/{n} 200", "user {w} logged in", "cache miss for key {w}{n}",
    "Starting worker {n}", "Stopping worker {n}", "table {w} vacuumed in {n} ms",
]), min_size=1, max_size=60), st.integers(1, 10))
def test_batching_never_splits_a_cluster_and_is_deterministic(templates, batch):
    """Clusters only merge: lines in one cluster when processed at once stay together when
    streamed in batches, and the same stream gives the same ids."""
    words = ["ann", "bo", "cy", "di", "ed"]
    lines = [t.format(n=i, w=words[i % 5]) for i, t in enumerate(templates)]
    sigs = [signature_of(x) for x in lines]
    whole = Clusterer()
    together = [whole.resolve(c) for c in whole.assign(sigs)]

    def streamed():
        clusterer, out = Clusterer(), []
        for i in range(0, len(sigs), batch):
            out.extend(clusterer.assign(sigs[i:i + batch]))
        return [clusterer.resolve(c) for c in out]

    first = streamed()
    assert first == streamed()
    for i in range(len(sigs)):
        for j in range(len(sigs)):
            if sigs[i] == sigs[j] or together[i] == together[j]:
                assert first[i] == first[j]


# -- labels and verdicts ---------------------------------------------------------------


def test_new_null_pointer_exception_fails_at_every_sensitivity():
    control = _requests("node-1") + _requests("node-2")
    test = _requests("node-3") + _errors("node-3", 3)
    for sensitivity in Sensitivity:
        result = judge_logs(control, test, sensitivity)
        assert (result.verdict, result.analyzer) == (Verdict.FAIL, ANALYZER)
        assert "NullPointerException" in result.reason
        [new] = [c for c in result.clusters if c.cluster.label is ClusterLabel.UNKNOWN]
        assert (new.rule, new.cluster.test_counts) == ("new-error", {"node-3": 3})


def test_near_miss_exception_from_the_same_place_is_new():
    control = _requests("node-1") + _errors("node-1", 3)
    test = _requests("node-3") + _errors("node-3", 3, IAE)
    result = judge_logs(control, test, Sensitivity.LOW)
    assert result.verdict is Verdict.FAIL
    assert "IllegalArgumentException" in result.reason


@pytest.mark.parametrize(("level", "sensitivity", "verdict", "rule"), [
    ("ERROR", Sensitivity.LOW, Verdict.FAIL, "new-error"),
    ("WARN", Sensitivity.HIGH, Verdict.FAIL, "new-warning"),
    ("WARN", Sensitivity.MEDIUM, Verdict.PASS, "new-warning"),
    ("WARN", Sensitivity.LOW, Verdict.PASS, "new-warning"),
    ("INFO", Sensitivity.HIGH, Verdict.PASS, "new-info"),
])
def test_new_cluster_table(level, sensitivity, verdict, rule):
    test = _requests("node-3") + [LogEvent("node-3", level, "Disk quota nearly full", T0)]
    result = judge_logs(_requests("node-1"), test, sensitivity)
    [new] = [c for c in result.clusters if c.cluster.label is ClusterLabel.UNKNOWN]
    assert (new.verdict, new.rule, result.verdict) == (verdict, rule, verdict)


@pytest.mark.parametrize(("control", "test", "sensitivity", "label", "verdict"), [
    (5, 40, Sensitivity.HIGH, ClusterLabel.UNEXPECTED_FREQUENCY, Verdict.FAIL),
    (5, 40, Sensitivity.MEDIUM, ClusterLabel.UNEXPECTED_FREQUENCY, Verdict.FAIL),
    (5, 40, Sensitivity.LOW, ClusterLabel.UNEXPECTED_FREQUENCY, Verdict.PASS),
    (3, 60, Sensitivity.LOW, ClusterLabel.UNEXPECTED_FREQUENCY, Verdict.FAIL),  # >= 10x
    (10, 14, Sensitivity.HIGH, ClusterLabel.KNOWN, Verdict.PASS),  # normal variation
    (2, 4, Sensitivity.HIGH, ClusterLabel.KNOWN, Verdict.PASS),  # too few to tell
    (40, 5, Sensitivity.HIGH, ClusterLabel.KNOWN, Verdict.PASS),  # fewer never fails
])
def test_error_frequency_table(control, test, sensitivity, label, verdict):
    result = judge_logs(_requests("node-1") + _errors("node-1", control),
                        _requests("node-3") + _errors("node-3", test), sensitivity)
    [error] = [c for c in result.clusters if c.cluster.is_error]
    assert (error.cluster.label, error.verdict) == (label, verdict)


def test_frequency_is_compared_per_host():
    """Two control hosts with 8 errors each and one canary with 8: the same rate."""
    control = _errors("node-1", 8) + _errors("node-2", 8) + _requests("node-1")
    result = judge_logs(control, _errors("node-3", 8) + _requests("node-3"), Sensitivity.HIGH)
    [error] = [c for c in result.clusters if c.cluster.is_error]
    assert error.cluster.label is ClusterLabel.KNOWN


def test_warning_frequency_fails_only_at_high():
    warn = "Retrying payment for order {n}"
    control = _spread("node-1", "WARN", lambda i: warn.format(n=i), 4) + _requests("node-1")
    test = _spread("node-3", "WARN", lambda i: warn.format(n=i), 60) + _requests("node-3")
    verdicts = {s: judge_logs(control, test, s).verdict for s in Sensitivity}
    assert verdicts == {Sensitivity.HIGH: Verdict.FAIL, Sensitivity.MEDIUM: Verdict.PASS,
                        Sensitivity.LOW: Verdict.PASS}


def test_known_from_a_previous_version_without_control_records():
    clusterer = Clusterer()
    [known] = set(clusterer.assign([signature_of(NPE.format(n=1, line=88))]))
    result = judge_logs([], _errors("node-3", 3), Sensitivity.HIGH, known={known},
                        clusterer=clusterer)
    assert result.verdict is Verdict.PASS


def test_no_test_records_is_no_data():
    assert judge_logs(_requests("node-1"), [], Sensitivity.HIGH).verdict is Verdict.NO_DATA


# -- feedback --------------------------------------------------------------------------


def _npe_id():
    clusterer = Clusterer()
    return clusterer.assign([signature_of(NPE.format(n=1, line=88))])[0]


@pytest.mark.parametrize(("risk", "sensitivity", "verdict", "rule"), [
    (Risk.HIGH, Sensitivity.LOW, Verdict.FAIL, "feedback-high-risk"),
    (Risk.MEDIUM, Sensitivity.HIGH, Verdict.FAIL, "feedback-medium-risk"),
    (Risk.MEDIUM, Sensitivity.MEDIUM, Verdict.PASS, "feedback-medium-risk"),
    (Risk.NO_RISK, Sensitivity.HIGH, Verdict.PASS, "feedback-no-risk"),
    (Risk.IGNORE, Sensitivity.HIGH, Verdict.PASS, "feedback-ignore"),
])
def test_feedback_overrides_the_rules(risk, sensitivity, verdict, rule):
    control = _requests("node-1") + _errors("node-1", 3)  # known: passes without feedback
    test = _requests("node-3") + _errors("node-3", 3)
    feedback = [Feedback(_npe_id(), risk, "reviewed")]
    result = judge_logs(control, test, sensitivity, feedback=feedback)
    [error] = [c for c in result.clusters if c.cluster.is_error]
    assert (error.verdict, error.rule, error.risk) == (verdict, rule, risk)


def test_ignore_suppresses_similar_future_clusters():
    ignored = "Slow consumer lag detected on partition queue orders shard primary"
    similar = "Slow consumer lag detected on partition queue payments shard primary"
    feedback = [Feedback("0" * 12, Risk.IGNORE, "noise", template=" ".join(tokens_of(ignored)))]
    test = _requests("node-3") + [LogEvent("node-3", "ERROR", similar, T0)]
    result = judge_logs(_requests("node-1"), test, Sensitivity.HIGH, feedback=feedback)
    assert result.verdict is Verdict.PASS
    assert any(c.rule == "feedback-ignore-similar" for c in result.clusters)


# -- replay ----------------------------------------------------------------------------


def test_replay_fills_line_clusters_and_cluster_labels():
    control = [{"id": f"c{i}", "host": "node-1", "ts": "2026-11-22T10:00:00Z",
                "text": f"2026-11-22T10:00:0{i}.000Z INFO [main] demo.http - GET /x/{i} 200"}
               for i in range(5)]
    test = [{"id": "t1", "host": "node-3", "ts": "2026-11-22T10:00:01Z",
             "text": control[0]["text"]},
            {"id": "t2", "host": "node-3", "ts": "2026-11-22T10:00:02Z",
             "text": "2026-11-22T10:00:02.000Z ERROR [x] demo.orders - "
                     + NPE.format(n=7, line=88)}]
    out = replay_logs(control, test, Sensitivity.MEDIUM)
    assert set(out["line_clusters"]) == {"c0", "c1", "c2", "c3", "c4", "t1", "t2"}
    assert out["line_clusters"]["t1"] == out["line_clusters"]["c0"]
    assert out["cluster_labels"] == {out["line_clusters"]["t1"]: "known",
                                     out["line_clusters"]["t2"]: "unknown"}
    assert out["verdict"] == "FAIL"
    assert replay_logs(control, test, Sensitivity.MEDIUM) == out
