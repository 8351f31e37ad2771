"""`vigil logs cluster FILE`: the log analyzer's clustering, offline (issue 6).

    vigil logs cluster app.log                      one row per input line
    vigil logs cluster X_2k.log_structured.csv --format loghub-csv

Prints CSV ``LineId,ClusterId``: for a raw log, LineId is the 1-based line number and every
line of a multi-line record (a stack trace) gets its record's cluster; for a Loghub structured
CSV, its ``LineId`` column and the cluster of its ``Content`` column. Same clustering code and
settings as the running analyzer; nothing is stored.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable


def register(sub: argparse._SubParsersAction) -> None:
    logs = sub.add_parser("logs", help="log clustering (offline, no server)")
    lsub = logs.add_subparsers(dest="action", required=True)
    cluster = lsub.add_parser("cluster", help="print LineId,ClusterId for every line of FILE")
    cluster.add_argument("file", help="log file, or - for standard input")
    cluster.add_argument("--format", choices=("raw", "loghub-csv"), default="raw",
                         help="raw log lines (default) or a Loghub *_structured.csv")
    cluster.set_defaults(func=_cluster)


def cluster_raw(lines: Iterable[str]) -> list[tuple[str, str]]:
    """(LineId, ClusterId) for every line of a raw log; records span continuation lines,
    blank lines get an empty ClusterId."""
    from vigil_log_analyzer.domain import Clusterer, signature_of, split_header
    from vigil_log_analyzer.domain.records import is_continuation

    records: list[list[str]] = []
    owners: list[int] = []  # record index of each line, -1 for a blank line
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line.strip():
            owners.append(-1)
            continue
        if records and is_continuation(line):
            records[-1].append(line)
        else:
            records.append([line])
        owners.append(len(records) - 1)
    sigs = [signature_of("\n".join([split_header(r[0]).message, *r[1:]])) for r in records]
    clusterer = Clusterer(max_signatures=max(20_000, len(set(sigs)) + 1))
    ids = [clusterer.resolve(c) for c in clusterer.assign(sigs)]
    return [(str(n), ids[o] if o >= 0 else "") for n, o in enumerate(owners, start=1)]


def cluster_loghub(rows: Iterable[dict[str, str]]) -> list[tuple[str, str]]:
    """(LineId, ClusterId) for every row of a Loghub structured CSV (its Content column)."""
    from vigil_log_analyzer.domain import Clusterer, signature_of

    table = list(rows)
    sigs = [signature_of(r["Content"]) for r in table]
    clusterer = Clusterer(max_signatures=max(20_000, len(set(sigs)) + 1))
    ids = [clusterer.resolve(c) for c in clusterer.assign(sigs)]
    return [(r["LineId"], c) for r, c in zip(table, ids, strict=True)]


def _cluster(args: argparse.Namespace) -> int:
    handle = sys.stdin if args.file == "-" else open(  # noqa: SIM115 - closed below
        args.file, encoding="utf-8", errors="replace", newline="")
    try:
        if args.format == "loghub-csv":
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"LineId", "Content"} <= set(reader.fieldnames):
                print("error: a Loghub structured CSV needs LineId and Content columns",
                      file=sys.stderr)
                return 2
            rows = cluster_loghub(reader)
        else:
            rows = cluster_raw(handle)
    finally:
        if handle is not sys.stdin:
            handle.close()
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["LineId", "ClusterId"])
    out.writerows(rows)
    return 0
