"""Watcher entry point: ``python -m vigil_delegate.watcher --goal goal.json`` (or ``--status``).

Settings come from the command line, each with an environment fallback:

- ``--goal`` / VIGIL_WATCHER_GOAL (required): the goal file (see goal.py);
- ``--status-file`` / VIGIL_WATCHER_STATUS, default ``<goal dir>/watcher-status.json``;
- ``--log-dir`` / VIGIL_WATCHER_LOG_DIR, default ``<goal dir>/logs``: one log per delegate;
- LOG_LEVEL, default INFO.

SIGHUP re-reads the goal at once; SIGTERM or SIGINT stops every delegate, then the watcher.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from vigil_common import logs
from vigil_delegate.watcher.supervisor import Supervisor


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vigil_delegate.watcher",
        description="Keep the delegate versions of a goal file running.")
    parser.add_argument("--goal", type=Path, default=environ.get("VIGIL_WATCHER_GOAL"),
                        help="goal state JSON file (VIGIL_WATCHER_GOAL)")
    parser.add_argument("--status-file", type=Path,
                        default=environ.get("VIGIL_WATCHER_STATUS"),
                        help="where the watcher reports what runs (VIGIL_WATCHER_STATUS)")
    parser.add_argument("--log-dir", type=Path, default=environ.get("VIGIL_WATCHER_LOG_DIR"),
                        help="directory of the delegates' output (VIGIL_WATCHER_LOG_DIR)")
    parser.add_argument("--status", action="store_true",
                        help="print what the running watcher reports, then exit")
    args = parser.parse_args(argv)
    if args.goal is None:
        parser.error("--goal (or VIGIL_WATCHER_GOAL) is required")
    args.goal = args.goal.resolve()
    args.status_file = args.status_file or args.goal.parent / "watcher-status.json"
    args.log_dir = args.log_dir or args.goal.parent / "logs"
    return args


def print_status(status_file: Path) -> int:
    """Prints the status file as a table; 1 when there is none."""
    try:
        status = json.loads(status_file.read_text())
    except (OSError, ValueError) as exc:
        print(f"no watcher status at {status_file}: {exc}", file=sys.stderr)
        return 1
    print(f"watcher pid {status['watcher_pid']}, goal {status['goal']}, "
          f"updated {status['updated_at']}")
    print(f"{'NAME':<24} {'VERSION':<10} {'STATE':<8} {'PID':>7} {'RESTARTS':>8} LAST EXIT")
    for d in status["delegates"]:
        pid = d["pid"] if d["pid"] is not None else "-"
        last = d["last_exit_code"] if d["last_exit_code"] is not None else "-"
        print(f"{d['name']:<24} {d['version']:<10} {d['state']:<8} {pid:>7} "
              f"{d['restarts']:>8} {last}")
    return 0


async def watch(args: argparse.Namespace) -> None:
    supervisor = Supervisor(args.goal, args.status_file, args.log_dir)
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(supervisor.run())
    loop.add_signal_handler(signal.SIGHUP, supervisor.request_reload)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    if args.status:
        return print_status(args.status_file)
    logs.configure(service="delegate-watcher", level=os.environ.get("LOG_LEVEL", "INFO"))
    asyncio.run(watch(args))
    return 0
