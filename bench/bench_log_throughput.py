"""Log clustering throughput and cluster-count growth on a 200k-line stream, against Drain3.

For each Loghub-2k data set, its 2,000 messages (``Content``) repeated 100 times form a
200,000-line stream. log-clusters-v2 takes it in batches of 2,000 lines, as the analyzer takes
delegate batches (signature per line, then :meth:`Clusterer.assign`); Drain3 (default
settings) takes it line by line with ``add_log_message``. Both run in this process, one after
the other, on the same input; lines/s is the stream length over wall time.

Growth: the number of clusters after the whole stream over the number after the first 2,000
lines (goal <= 1.1x; a repeated stream should add nothing, so anything above 1.0 is
fragmentation). Each string is copied before it is fed, so no tool benefits from a hash cached
on a repeated string object.
"""

from __future__ import annotations

import csv
import gc
import statistics
import sys
import time
from pathlib import Path

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from vigil_log_analyzer.domain import Clusterer, signature_of

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "loghub-2k"
REPEAT = 100
BATCH = 2_000


def _messages(system: str) -> list[str]:
    [path] = (DATA / system).glob("*_structured.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        return [r["Content"] for r in csv.DictReader(handle)]


def _stream(messages: list[str]) -> list[str]:
    # "".join makes a new str object, so its hash is not cached from an earlier repeat.
    return ["".join([m, ""]) if i else m for i in range(REPEAT) for m in messages]


def _ours(stream: list[str]) -> tuple[float, int, int]:
    clusterer = Clusterer()
    first = 0
    started = time.perf_counter()
    for i in range(0, len(stream), BATCH):
        clusterer.assign([signature_of(m) for m in stream[i:i + BATCH]])
        if i == 0:
            first = len(clusterer.clusters())
    elapsed = time.perf_counter() - started
    return len(stream) / elapsed, first, len(clusterer.clusters())


def _drain3(stream: list[str]) -> tuple[float, int, int]:
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    first = 0
    started = time.perf_counter()
    for i, message in enumerate(stream):
        miner.add_log_message(message)
        if i == BATCH - 1:
            first = len(miner.drain.clusters)
    elapsed = time.perf_counter() - started
    return len(stream) / elapsed, first, len(miner.drain.clusters)


def main() -> int:
    systems = sorted(p.name for p in DATA.iterdir() if p.is_dir())
    print(f"{REPEAT * 2000:,}-line stream per data set (2k lines x {REPEAT}); lines/s, and "
          "clusters after 2k lines -> after the stream\n")
    print(f"{'dataset':<12}{'vigil l/s':>11}{'drain3 l/s':>12}{'ratio':>7}"
          f"{'vigil clusters':>18}{'growth':>8}{'drain3 clusters':>18}{'growth':>8}")
    ratios, growth = [], []
    for system in systems:
        stream = _stream(_messages(system))
        gc.collect()
        ours = _ours(stream)
        gc.collect()
        drain = _drain3(stream)
        ratio = ours[0] / drain[0]
        ratios.append(ratio)
        growth.append(ours[2] / ours[1])
        print(f"{system:<12}{ours[0]:>11,.0f}{drain[0]:>12,.0f}{ratio:>6.2f}x"
              f"{f'{ours[1]} -> {ours[2]}':>18}{ours[2] / ours[1]:>7.2f}x"
              f"{f'{drain[1]} -> {drain[2]}':>18}{drain[2] / drain[1]:>7.2f}x")
    mean = statistics.geometric_mean(ratios)
    print(f"\nthroughput vs Drain3: geometric mean {mean:.2f}x (min {min(ratios):.2f}x, "
          f"max {max(ratios):.2f}x); goal >= 1.0x: {'met' if mean >= 1.0 else 'NOT met'}")
    print(f"cluster-count growth: max {max(growth):.2f}x; goal <= 1.1x: "
          f"{'met' if max(growth) <= 1.1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
