"""The watcher supervising real delegate processes (``python -m vigil_delegate``).

The delegates point at a gateway address nobody listens on, so they stay up reconnecting with
backoff: real processes, no gateway needed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vigil_delegate.targets.processes import free_port

DEADLINE_S = 20.0


def _delegate(name: str, version: str, tmp: Path, gateway: str) -> dict[str, Any]:
    return {"name": name, "version": version, "env": {
        "DELEGATE_ACCOUNT": "acme", "DELEGATE_TOKEN": "not-checked-here",
        "DELEGATE_GATEWAY": gateway, "DELEGATE_WORKDIR": str(tmp / name)}}


def _write_goal(path: Path, delegates: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_text(json.dumps({"delegates": delegates}))
    os.replace(tmp, path)


def _eventually(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what}: not within {DEADLINE_S}s")


def _status(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return {d["name"]: d for d in json.loads(path.read_text())["delegates"]}
    except (OSError, ValueError):
        return {}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return state != "Z"


@pytest.fixture
def goal(tmp_path: Path) -> Path:
    return tmp_path / "goal.json"


@pytest.fixture
def watcher(tmp_path: Path, goal: Path) -> Iterator[subprocess.Popen[bytes]]:
    gateway = f"127.0.0.1:{free_port()}"  # nothing listens there
    _write_goal(goal, [_delegate("delegate-v1", "v1", tmp_path, gateway),
                       _delegate("delegate-v2", "v2", tmp_path, gateway)])
    with (tmp_path / "watcher.log").open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vigil_delegate.watcher", "--goal",
                                 str(goal)], stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def test_watcher_restarts_a_killed_delegate_and_stops_one_removed_from_the_goal(
        tmp_path: Path, goal: Path, watcher: subprocess.Popen[bytes]) -> None:
    status_file = tmp_path / "watcher-status.json"
    running = _eventually("both delegates running", lambda: (
        s := _status(status_file)) and all(
            s.get(n, {}).get("state") == "running" for n in ("delegate-v1", "delegate-v2"))
        and s)
    v1, v2 = running["delegate-v1"]["pid"], running["delegate-v2"]["pid"]
    assert _environ(v1)["VIGIL_VERSION"] == "v1" and _environ(v2)["VIGIL_VERSION"] == "v2"
    assert "vigil_delegate" in Path(f"/proc/{v1}/cmdline").read_text()

    os.kill(v1, signal.SIGKILL)
    restarted = _eventually("delegate-v1 restarted", lambda: (
        d := _status(status_file).get("delegate-v1", {})).get("state") == "running"
        and d["pid"] != v1 and d)
    assert restarted["restarts"] == 1 and restarted["last_exit_code"] == -signal.SIGKILL
    assert _alive(restarted["pid"]) and _alive(v2)

    gateway = json.loads(goal.read_text())["delegates"][0]["env"]["DELEGATE_GATEWAY"]
    _write_goal(goal, [_delegate("delegate-v1", "v1", tmp_path, gateway)])
    _eventually("delegate-v2 stopped", lambda: "delegate-v2" not in _status(status_file))
    _eventually("delegate-v2's process gone", lambda: not _alive(v2))
    assert _alive(restarted["pid"])

    shown = subprocess.run([sys.executable, "-m", "vigil_delegate.watcher", "--goal", str(goal),
                            "--status"], capture_output=True, text=True, check=True).stdout
    assert "delegate-v1" in shown and "running" in shown and "delegate-v2" not in shown

    watcher.send_signal(signal.SIGTERM)
    assert watcher.wait(30) == 0
    assert not _alive(restarted["pid"])
    assert _status(status_file)["delegate-v1"]["state"] == "stopped"


def test_an_invalid_goal_keeps_the_last_good_one(
        tmp_path: Path, goal: Path, watcher: subprocess.Popen[bytes]) -> None:
    status_file = tmp_path / "watcher-status.json"
    running = _eventually("both delegates running", lambda: (s := _status(status_file)) and all(
        d["state"] == "running" for d in s.values()) and len(s) == 2 and s)
    goal.write_text('{"delegates": [{"name": "x"}]}')  # no version: refused
    watcher.send_signal(signal.SIGHUP)
    _eventually("the refusal logged", lambda: "goal file invalid" in (
        tmp_path / "watcher.log").read_text())
    assert {n: d["pid"] for n, d in _status(status_file).items()} == {
        n: d["pid"] for n, d in running.items()}
