"""Log grouping accuracy on Loghub-2k: log-clusters-v2 against Drain3 (default settings).

Both cluster the ``Content`` column of each of the 16 ``<System>_2k.log_structured.csv`` files
in ../shared/data/loghub-2k with ONE configuration for all 16 (no per-dataset regexes, depths
or thresholds). Predictions are written as ``<System>.csv`` (LineId,ClusterId) and scored with
the shared scorer, ``../shared/bench/loghub_score.py --all``, exactly as a user would run it:
``vigil logs cluster X_2k.log_structured.csv --format loghub-csv`` gives the same predictions.

Reference points (same scorer, this machine, from the issue): Drain3 default 0.732 average;
Drain3 with LogPAI's per-dataset tuned settings 0.860; the published Drain figure 0.866.
Goal: >= 0.95 average with no per-dataset settings.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from vigil_cli.logs import cluster_loghub

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "loghub-2k"
SCORER = ROOT.parent / "shared" / "bench" / "loghub_score.py"


def _rows(system: str) -> list[dict[str, str]]:
    [path] = (DATA / system).glob("*_structured.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _drain3(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    config = TemplateMinerConfig()  # defaults: depth 4, sim_th 0.4, no masking
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    return [(r["LineId"], str(miner.add_log_message(r["Content"])["cluster_id"])) for r in rows]


def _write(folder: Path, system: str, predictions: list[tuple[str, str]]) -> None:
    with (folder / f"{system}.csv").open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["LineId", "ClusterId"])
        out.writerows(predictions)


def _score(folder: Path) -> tuple[str, dict[str, float]]:
    table = subprocess.run([sys.executable, str(SCORER), "--all", str(DATA), str(folder)],
                           check=True, capture_output=True, text=True).stdout
    ga = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 1 and cells[0] not in ("Dataset", "---") and not cells[0].startswith("-"):
            ga[cells[0].strip("*")] = float(cells[1])
    return table, ga


def main() -> int:
    systems = sorted(p.name for p in DATA.iterdir() if p.is_dir())
    with tempfile.TemporaryDirectory() as tmp:
        ours, drain = Path(tmp, "ours"), Path(tmp, "drain3")
        ours.mkdir()
        drain.mkdir()
        spent = {"ours": 0.0, "drain3": 0.0}
        for system in systems:
            rows = _rows(system)
            started = time.perf_counter()
            _write(ours, system, cluster_loghub(rows))
            spent["ours"] += time.perf_counter() - started
            started = time.perf_counter()
            _write(drain, system, _drain3(rows))
            spent["drain3"] += time.perf_counter() - started
        our_table, our_ga = _score(ours)
        drain_table, drain_ga = _score(drain)
    print("log-clusters-v2 (vigil logs cluster), one configuration for all 16:\n")
    print(our_table)
    print("\nDrain3 0.9.11, default settings:\n")
    print(drain_table)
    print("\nGrouping accuracy side by side:\n")
    print(f"{'dataset':<14}{'vigil':>8}{'drain3':>8}{'diff':>8}")
    for name in [*systems, f"Average ({len(systems)})"]:
        a, b = our_ga[name], drain_ga[name]
        print(f"{name:<14}{a:>8.4f}{b:>8.4f}{a - b:>+8.4f}")
    average = our_ga[f"Average ({len(systems)})"]
    print(f"\naverage GA {average:.4f} vs Drain3 {drain_ga[f'Average ({len(systems)})']:.4f} "
          f"(x{average / drain_ga[f'Average ({len(systems)})']:.2f}); goal >= 0.95: "
          f"{'met' if average >= 0.95 else 'NOT met'}; time {spent['ours']:.1f}s vs "
          f"{spent['drain3']:.1f}s for 32k lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
