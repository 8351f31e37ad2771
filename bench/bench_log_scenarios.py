"""Unknown and unexpected-frequency detection on generated deployment logs, against an
exact-template baseline.

Generator (fixed seed): verifications of a Java or a Python service, 3 control hosts and 2 test
hosts over the same 10 minutes, each host logging ~35 statements at Poisson rates per minute
(INFO request and cache lines, WARN retries, known ERRORs with Java stack traces or Python
tracebacks). Values vary the way production logs do: numbers, UUIDs, IPs, durations, paths and
word-valued fields (tenant, user, table, region names drawn from vocabularies larger than one
window shows, so the test side meets values the control side never logged). Frequency jitter:
every statement's rate varies per host and per minute (lognormal), known errors included.

Injected on the test side (each verification gets 0-3 of them):
- a new exception (new class thrown from a new place)              truth: unknown
- a near-miss exception (same message line, another exception class) truth: unknown
- a new WARN statement                                             truth: unknown
- a known error 6-12x as frequent                                  truth: unexpected-frequency

Scoring per test cluster: a cluster's statement is the one most of its lines come from. A
predicted-unknown cluster is a true positive when its statement is truly unknown; recall counts
the truly unknown statements that got an unknown cluster (same for unexpected frequency).

Baseline: exact templates (the walking skeleton's ``new-template-v1``: regex masking of numbers,
ids, IPs, quoted strings, ``key=value``; one cluster per exact template; unexpected frequency
when an error is > 3x as frequent per host with >= 5 occurrences).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from vigil_common.verdicts import Sensitivity
from vigil_log_analyzer.domain import ClusterLabel, LogEvent, judge_logs
from vigil_log_analyzer.domain.templates import template_id, template_of

SEED = 20261122
VERIFICATIONS = 40
MINUTES = 10
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TENANTS = [f"{a}{b}" for a in ("acme", "globex", "initech", "umbrella", "hooli", "stark",
                                "wayne", "wonka", "tyrell", "cyberdyne")
           for b in ("", "-eu", "-us", "corp", "labs")]
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"]
TABLES = ["orders", "payments", "customers", "invoices", "shipments", "carts", "refunds",
          "coupons", "reviews", "sessions", "audit_log", "inventory"]
REGIONS = ["eu-west", "eu-central", "us-east", "us-west", "ap-south", "sa-east"]


def _java_trace(cls: str, where: str, message: str) -> str:
    return (f"{message}\n\t{cls}: {{detail}}\n\tat com.shop.{where}(" + where.split(".")[0]
            + ".java:{line})\n\tat com.shop.web.Controller.handle(Controller.java:88)")


def _python_trace(cls: str, where: str, message: str) -> str:
    fn = where.split(".")[-1]
    return (f"{message}\nTraceback (most recent call last):\n"
            f'  File "/srv/shop/{where.split(".")[0]}.py", line {{line}}, in {fn}\n'
            f"    do_work(job)\n{cls}: {{detail}}")


@dataclass(frozen=True)
class Statement:
    """One logging statement of the generated service."""

    name: str
    level: str
    text: str  # str.format template; {n} {ms} {uuid} {ip} {tenant} {user} {table} ...
    rate: float  # per host-minute


def _statements(lang: str, rng: np.random.Generator) -> list[Statement]:
    trace = _java_trace if lang == "java" else _python_trace
    err = ("java.lang.IllegalStateException", "java.util.concurrent.TimeoutException",
           "java.sql.SQLTransientConnectionException") if lang == "java" else (
        "ValueError", "TimeoutError", "psycopg.OperationalError")
    base = [
        ("req", "INFO", "GET /api/orders/{n} 200 in {ms} ms request_id={uuid}", 30),
        ("req-post", "INFO", "POST /api/carts/{n}/items 201 in {ms} ms", 12),
        ("cache", "INFO", "Cache warmed for tenant {tenant} in {ms} ms", 3),
        ("login", "INFO", "User {user} logged in from {ip}", 4),
        ("vacuum", "INFO", "Table {table} vacuumed: {n} dead rows removed", 1),
        ("sched", "INFO", "Scheduled job {job} for tenant {tenant} at {n}", 2),
        ("conn", "INFO", "Opened connection to {ip}:5432 for pool {table}", 1.5),
        ("flush", "INFO", "Flushed {n} events to topic {table}.events in {ms} ms", 5),
        ("retry", "WARN", "Retrying payment {uuid} for tenant {tenant} (attempt {small})", 1),
        ("slow", "WARN", "Slow query on table {table} took {ms} ms", 0.8),
        ("region", "WARN", "Region {region} latency above target: {ms} ms", 0.5),
        ("err-db", "ERROR", trace(err[2], "db.Pool.acquire", "Could not acquire connection "
                                  "for tenant {tenant}"), 0.6),
        ("err-timeout", "ERROR", trace(err[1], "client.Gateway.call", "Upstream call to "
                                       "{region} timed out after {ms} ms"), 0.4),
        ("err-state", "ERROR", trace(err[0], "orders.Service.price", "Failed to price order "
                                     "{n}"), 0.3),
    ]
    extra = [(f"info-{i}", "INFO", f"Step {w} completed for order {{n}} by worker {{small}}",
              float(rng.uniform(0.2, 2.0)))
             for i, w in enumerate(("validate", "reserve", "charge", "ship", "notify", "archive",
                                    "audit", "index", "reconcile", "export", "bill", "tag",
                                    "score", "route", "pack", "label", "track", "close",
                                    "sync", "emit"))]
    return [Statement(*s) for s in base + extra]


def _injections(lang: str) -> dict[str, Statement]:
    trace = _java_trace if lang == "java" else _python_trace
    npe = "java.lang.NullPointerException" if lang == "java" else "AttributeError"
    other = "java.lang.IllegalArgumentException" if lang == "java" else "KeyError"
    return {
        "new-exception": Statement("new-exception", "ERROR", trace(
            npe, "crypto.EncryptionService.encrypt", "Encryption failed for tenant {tenant}"),
            0.8),
        "near-miss": Statement("near-miss", "ERROR", trace(
            other, "orders.Service.price", "Failed to price order {n}"), 0.6),
        "new-warning": Statement("new-warning", "WARN",
                                 "Feature flag {table}_v2 evaluated without context for user "
                                 "{user}", 0.9),
    }


def _render(text: str, rng: np.random.Generator) -> str:
    values = {
        "n": int(rng.integers(1, 10**6)), "ms": int(rng.gamma(2, 40)),
        "uuid": "-".join(f"{int(x):x}" for x in rng.integers(16**3, 16**4, 5)) + "abcd1234",
        "ip": ".".join(str(int(x)) for x in rng.integers(1, 255, 4)),
        "tenant": TENANTS[int(rng.zipf(1.5)) % len(TENANTS)],
        "user": USERS[int(rng.integers(len(USERS)))],
        "table": TABLES[int(rng.integers(len(TABLES)))],
        "region": REGIONS[int(rng.integers(len(REGIONS)))],
        "job": f"job-{int(rng.integers(1000))}", "small": int(rng.integers(1, 5)),
        "line": int(rng.integers(40, 400)), "detail": f"value {int(rng.integers(100))} is bad",
    }
    return text.format(**values)


def _emit(statements, hosts, rng, boost=None):
    boost = boost or {}
    out = []  # (statement name, LogEvent)
    for host in hosts:
        host_factor = rng.lognormal(0, 0.25)
        for minute in range(MINUTES):
            for s in statements:
                rate = s.rate * host_factor * rng.lognormal(0, 0.35) * boost.get(s.name, 1.0)
                for _ in range(rng.poisson(rate)):
                    at = T0 + timedelta(minutes=minute, seconds=float(rng.uniform(0, 60)))
                    out.append((s.name, LogEvent(host, s.level, _render(s.text, rng), at)))
    return out


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: set[str], truth: set[str]) -> None:
        self.tp += len(predicted & truth)
        self.fp += len(predicted - truth)
        self.fn += len(truth - predicted)

    def row(self) -> str:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        return f"P {p:.3f}  R {r:.3f}  (tp {self.tp}, fp {self.fp}, fn {self.fn})"


def _baseline(control, test):
    """Exact templates: {predicted unknown, predicted unexpected} as test-line cluster keys."""
    ckey = [template_id(template_of(e.message)) for e in control]
    tkey = [template_id(template_of(e.message)) for e in test]
    ccount, tcount = Counter(ckey), Counter(tkey)
    chosts, thosts = len({e.host for e in control}), len({e.host for e in test})
    levels = {k: e.level for k, e in zip(tkey, test, strict=True)}
    labels = {}
    for key, n in tcount.items():
        if key not in ccount:
            labels[key] = "unknown"
        elif (levels[key] == "ERROR" and n >= 5
              and n / thosts > 3 * ccount[key] / chosts):
            labels[key] = "unexpected"
        else:
            labels[key] = "known"
    return tkey, labels


def _ours(control, test):
    result = judge_logs(control, test, Sensitivity.HIGH)
    names = {ClusterLabel.UNKNOWN: "unknown", ClusterLabel.UNEXPECTED_FREQUENCY: "unexpected",
             ClusterLabel.KNOWN: "known"}
    return list(result.test_ids), {v.cluster.id: names[v.cluster.label] for v in result.clusters}


def _predicted(keys, labels, names, label):
    """Statements (by majority of each cluster's lines) of the clusters with ``label``."""
    members: dict[str, Counter[str]] = {}
    for key, name in zip(keys, names, strict=True):
        members.setdefault(key, Counter())[name] += 1
    out = []
    for key, counts in members.items():
        if labels[key] == label:
            out.append(counts.most_common(1)[0][0])
    return out


def main() -> int:
    rng = np.random.default_rng(SEED)
    tallies = {tool: {lab: Tally() for lab in ("unknown", "unexpected")}
               for tool in ("vigil", "baseline")}
    clusters = {"vigil": 0, "baseline": 0}
    spent = {"vigil": 0.0, "baseline": 0.0}
    lines = 0
    for index in range(VERIFICATIONS):
        lang = "java" if index % 2 == 0 else "python"
        statements = _statements(lang, rng)
        injections = _injections(lang)
        kinds = list(rng.choice(["new-exception", "near-miss", "new-warning", "frequency"],
                                size=int(rng.integers(0, 4)), replace=False))
        test_statements = statements + [injections[k] for k in kinds if k in injections]
        boosted = str(rng.choice(["err-db", "err-timeout", "err-state"]))
        boost = {boosted: float(rng.uniform(6, 12))} if "frequency" in kinds else {}
        control = _emit(statements, ["node-1", "node-2", "node-3"], rng)
        test = _emit(test_statements, ["node-4", "node-5"], rng, boost)
        control_names = {name for name, _ in control}
        test_names = [name for name, _ in test]
        truth = {
            "unknown": {n for n in test_names if n not in control_names},
            "unexpected": set(boost) & set(test_names) & control_names,
        }
        control_events = [e for _, e in control]
        test_events = [e for _, e in test]
        lines += len(control_events) + len(test_events)
        for tool, run in (("vigil", _ours), ("baseline", _baseline)):
            started = time.perf_counter()
            keys, labels = run(control_events, test_events)
            spent[tool] += time.perf_counter() - started
            clusters[tool] += len(labels)
            for label in ("unknown", "unexpected"):
                predicted = _predicted(keys, labels, test_names, label)
                tally = tallies[tool][label]
                # A statement predicted twice (fragmented) counts one TP and one FP.
                seen: set[str] = set()
                for name in predicted:
                    if name in truth[label] and name not in seen:
                        tally.tp += 1
                        seen.add(name)
                    else:
                        tally.fp += 1
                tally.fn += len(truth[label] - seen)
    print(f"{VERIFICATIONS} verifications (Java and Python services, 3 control + 2 test hosts, "
          f"{MINUTES} minutes), {lines:,} lines, seed {SEED}\n")
    for label, title in (("unknown", "unknown clusters"),
                         ("unexpected", "unexpected-frequency clusters")):
        print(f"{title}:")
        for tool in ("vigil", "baseline"):
            name = "log-clusters-v2" if tool == "vigil" else "exact-template baseline"
            print(f"  {name:<24} {tallies[tool][label].row()}")
    print(f"\ntest clusters per verification: vigil {clusters['vigil'] / VERIFICATIONS:.1f}, "
          f"baseline {clusters['baseline'] / VERIFICATIONS:.1f} (the service has ~35 "
          f"statements); analysis time per verification: vigil "
          f"{spent['vigil'] / VERIFICATIONS * 1000:.0f} ms, baseline "
          f"{spent['baseline'] / VERIFICATIONS * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
