"""The supervisor loop: make the running delegate processes match the goal state.

Every tick it re-reads the goal file when its modification time changed (or after SIGHUP),
then: starts goals that do not run, restarts processes whose goal changed, stops processes no
longer in the goal, and schedules a restart with exponential backoff for a process that
exited (the backoff resets once a process ran ``stable_after_s``). A goal file that does not
parse is logged and ignored: the last good goal stays in force. The status file is rewritten
atomically after every change.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil_common import logs
from vigil_delegate.watcher.goal import DelegateGoal, GoalError, backoff_seconds, parse_goal

log = logs.get(__name__)


@dataclass
class _Slot:
    """What the watcher knows about one goal's process."""

    goal: DelegateGoal
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic()
    started_wall: str = ""
    restarts: int = 0
    crashes: int = 0  # consecutive quick exits, for the backoff
    next_start: float = 0.0  # time.monotonic() before which it is not restarted
    last_exit: int | None = None


class Supervisor:
    """Keeps one process per goal entry running."""

    def __init__(self, goal_path: Path, status_path: Path, log_dir: Path, *,
                 tick_s: float = 0.5, backoff_initial_s: float = 1.0,
                 backoff_max_s: float = 60.0, stable_after_s: float = 30.0,
                 stop_grace_s: float = 10.0) -> None:
        self._goal_path = goal_path
        self._status_path = status_path
        self._log_dir = log_dir
        self._tick_s = tick_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._stable_after_s = stable_after_s
        self._stop_grace_s = stop_grace_s
        self._goals: dict[str, DelegateGoal] = {}
        self._slots: dict[str, _Slot] = {}
        self._goal_mtime: float | None = None
        self._reload = True

    def request_reload(self) -> None:
        """Re-read the goal at the next tick (the SIGHUP handler)."""
        self._reload = True

    async def run(self) -> None:
        """Supervises until cancelled; then stops every process it started."""
        try:
            while True:
                self._load_goal()
                self.reconcile()
                await asyncio.sleep(self._tick_s)
        finally:
            await asyncio.to_thread(self.stop_all)

    def reconcile(self) -> None:
        """One pass: reap exits, stop what left the goal, (re)start what should run."""
        now = time.monotonic()
        changed = False
        for name, slot in list(self._slots.items()):
            goal = self._goals.get(name)
            if goal is None or goal.fingerprint != slot.goal.fingerprint:
                self._stop(slot, "removed from the goal" if goal is None else "goal changed")
                del self._slots[name]
                changed = True
            elif slot.process is not None and slot.process.poll() is not None:
                self._reap(slot, now)
                changed = True
        for name, goal in self._goals.items():
            slot = self._slots.setdefault(name, _Slot(goal))
            if slot.process is None and now >= slot.next_start:
                self._start(slot, now)
                changed = True
        if changed:
            self.write_status()

    def stop_all(self) -> None:
        """Stops every process (SIGTERM, then SIGKILL after the grace period)."""
        for slot in self._slots.values():
            self._stop(slot, "watcher stopping")
        self._goals = {}  # reported as stopped
        self.write_status()

    def write_status(self) -> None:
        """Writes the status file atomically (see :func:`status`)."""
        self._status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2) + "\n")
        os.replace(tmp, self._status_path)

    def status(self) -> dict[str, Any]:
        """What runs: one entry per goal with state running, backoff or stopped."""
        now = time.monotonic()
        entries = []
        for name, slot in sorted(self._slots.items()):
            running = slot.process is not None and slot.process.poll() is None
            entries.append({
                "name": name, "version": slot.goal.version,
                "state": "running" if running else "backoff" if name in self._goals else
                "stopped",
                "pid": slot.process.pid if running and slot.process else None,
                "started_at": slot.started_wall if running else None,
                "restarts": slot.restarts, "last_exit_code": slot.last_exit,
                "restart_in_s": None if running else round(max(0.0, slot.next_start - now), 1),
            })
        return {"updated_at": datetime.now(UTC).isoformat(), "watcher_pid": os.getpid(),
                "goal": str(self._goal_path), "delegates": entries}

    def _load_goal(self) -> None:
        try:
            mtime = self._goal_path.stat().st_mtime
        except OSError as exc:
            if self._reload or self._goal_mtime is not None:
                log.error("goal file unreadable; keeping the last goal", error=str(exc))
            self._reload, self._goal_mtime = False, None
            return
        if not self._reload and mtime == self._goal_mtime:
            return
        self._reload, self._goal_mtime = False, mtime
        try:
            goals = parse_goal(self._goal_path.read_text())
        except (GoalError, OSError) as exc:
            log.error("goal file invalid; keeping the last goal", error=str(exc))
            return
        log.info("goal loaded", delegates=sorted(f"{g.name}@{g.version}" for g in goals.values()))
        self._goals = goals

    def _start(self, slot: _Slot, now: float) -> None:
        goal = slot.goal
        self._log_dir.mkdir(parents=True, exist_ok=True)
        try:
            with (self._log_dir / f"{goal.name}.log").open("ab") as out:
                slot.process = subprocess.Popen(
                    list(goal.command), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, env=goal.environment(os.environ),
                    cwd=goal.cwd or None, start_new_session=True)
        except OSError as exc:
            slot.crashes += 1
            slot.next_start = now + backoff_seconds(slot.crashes, *self._backoff)
            log.error("delegate failed to start", name=goal.name, error=str(exc),
                      retry_in_s=round(slot.next_start - now, 1))
            return
        slot.started_at, slot.started_wall = now, datetime.now(UTC).isoformat()
        log.info("delegate started", name=goal.name, version=goal.version,
                 pid=slot.process.pid)

    def _reap(self, slot: _Slot, now: float) -> None:
        assert slot.process is not None
        slot.last_exit = slot.process.returncode
        ran_s = now - slot.started_at
        slot.crashes = 1 if ran_s >= self._stable_after_s else slot.crashes + 1
        slot.restarts += 1
        slot.next_start = now + backoff_seconds(slot.crashes, *self._backoff)
        log.warning("delegate exited", name=slot.goal.name, code=slot.last_exit,
                    ran_s=round(ran_s, 1), restart_in_s=round(slot.next_start - now, 1))
        slot.process = None

    def _stop(self, slot: _Slot, why: str) -> None:
        proc = slot.process
        if proc is None or proc.poll() is not None:
            slot.process = None
            return
        _signal(proc, signal.SIGTERM)
        try:
            proc.wait(self._stop_grace_s)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait()
        log.info("delegate stopped", name=slot.goal.name, pid=proc.pid, why=why,
                 code=proc.returncode)
        slot.process = None


def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # its own session: reach anything it forked too
    except ProcessLookupError:
        pass
