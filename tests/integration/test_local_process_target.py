"""The local-process target deploying and rolling back the real demo service."""

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vigil_delegate.health import collect_metrics, read_log_records
from vigil_delegate.targets import DeploymentError, LocalProcessTarget
from vigil_delegate.targets.processes import free_port

SERVICE = "demo"
DEMO = [sys.executable, "-m", "vigil_demo", "--node", "{node}", "--version", "{version}",
        "--port", "{port}", "--log-file", "{log_file}"]


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[LocalProcessTarget]:
    target = LocalProcessTarget(tmp_path / "delegate", stop_grace_s=3.0)
    try:
        yield target
    finally:
        await target.stop_all()


@pytest.fixture
def progress() -> list[str]:
    return []


def _versions(target: LocalProcessTarget) -> dict[str, str]:
    return {info.node: info.version for info in target.nodes(SERVICE) if info.alive}


async def test_canary_deploy_collect_and_rollback(
    target: LocalProcessTarget, progress: list[str]
) -> None:
    await target.deploy(SERVICE, "v1", ["node-1", "node-2"], DEMO, progress.append)
    canary = await target.deploy(SERVICE, "v2", ["node-3"], DEMO, progress.append)
    assert _versions(target) == {"node-1": "v1", "node-2": "v1", "node-3": "v2"}

    endpoints = {i.node: f"http://127.0.0.1:{i.port}/metrics" for i in target.nodes(SERVICE)}
    series = await collect_metrics(endpoints, duration_s=3, interval_s=1,
                                   on_progress=progress.append)
    for host in endpoints:
        assert len(series["response_time_ms"][host]) == 3
        assert all(isinstance(v, float) for v in series["response_time_ms"][host]), series
    assert progress[-1] == "scrape 3/3: 3 ok"

    records = read_log_records(canary.nodes[0].log_file, datetime.now(UTC) - timedelta(hours=1),
                               datetime.now(UTC) + timedelta(hours=1))
    assert any("java.lang.NullPointerException" in r.message for r in records)

    result = await target.rollback(SERVICE, ["node-3"], progress.append)
    assert result.removed == ("node-3",)
    assert not _pid_exists(canary.nodes[0].pid)
    assert _versions(target) == {"node-1": "v1", "node-2": "v1"}

    again = await target.rollback(SERVICE, ["node-3"], progress.append)
    assert again.removed == ()
    assert progress[-1] == "node-3: not deployed, nothing to roll back"


async def test_a_redeployed_node_rolls_back_to_its_previous_version(
    target: LocalProcessTarget, progress: list[str]
) -> None:
    first = await target.deploy(SERVICE, "v1", ["node-1"], DEMO, progress.append)
    upgraded = await target.deploy(SERVICE, "v2", ["node-1"], DEMO, progress.append)
    assert not _pid_exists(first.nodes[0].pid)
    assert upgraded.nodes[0].port != first.nodes[0].port

    rolled = await target.rollback(SERVICE, ["node-1"], progress.append)
    assert [(i.node, i.version, i.alive) for i in rolled.nodes] == [("node-1", "v1", True)]
    assert not _pid_exists(upgraded.nodes[0].pid)

    repeated = await target.rollback(SERVICE, ["node-1"], progress.append,
                                     expected_version="v2")
    assert [i.version for i in repeated.nodes] == ["v1"]


async def test_a_repeated_deploy_leaves_the_running_process_alone(
    target: LocalProcessTarget, progress: list[str]
) -> None:
    first = await target.deploy(SERVICE, "v1", ["node-1"], DEMO, progress.append)
    second = await target.deploy(SERVICE, "v1", ["node-1"], DEMO, progress.append)
    assert second.nodes == first.nodes
    assert progress[-1] == f"node-1: already runs v1 (pid {first.nodes[0].pid})"


async def test_a_release_that_exits_at_once_fails_and_the_old_process_keeps_running(
    target: LocalProcessTarget, progress: list[str]
) -> None:
    old = await target.deploy(SERVICE, "v1", ["node-1", "node-2"], DEMO, progress.append)
    crash = "import sys; print('boom: bad config', file=sys.stderr); sys.exit(3)"
    broken = [sys.executable, "-c", crash, "{version}"]

    with pytest.raises(DeploymentError) as failure:
        await target.deploy(SERVICE, "v2", ["node-2"], broken, progress.append)

    assert failure.value.node == "node-2"
    assert "exited with code 3" in str(failure.value)
    assert "boom: bad config" in failure.value.output
    assert target.nodes(SERVICE) == list(old.nodes)


async def test_a_process_that_died_is_reported_dead(
    target: LocalProcessTarget, progress: list[str]
) -> None:
    deployed = await target.deploy(SERVICE, "v1", ["node-1"], DEMO, progress.append)
    os.kill(deployed.nodes[0].pid, signal.SIGKILL)
    await _until(lambda: not target.nodes(SERVICE)[0].alive)

    restarted = await target.deploy(SERVICE, "v1", ["node-1"], DEMO, progress.append)
    assert restarted.nodes[0].alive
    assert restarted.nodes[0].pid != deployed.nodes[0].pid


async def test_a_host_that_cannot_be_scraped_gives_none(progress: list[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    series = await collect_metrics({"gone": dead}, duration_s=0.4, interval_s=0.2,
                                   on_progress=progress.append)
    assert series["requests_per_interval"] == {"gone": [None, None]}
    assert "1 failed: gone" in progress[-1]


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
