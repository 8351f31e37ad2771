"""Versions on this machine: each one a set of processes beside the others (``make run``).

Two pieces:

- ``LocalVersions`` starts and stops the process set of a version (the five services, each from
  its own entry point with ``VIGIL_VERSION``), sharing the broker and the database of the
  running stack, and records each version's endpoints and state in ``vigil_versions``. The
  version's delegate is brought up by a delegate watcher (``python -m vigil_delegate.watcher``,
  as on a customer's host): the version is added to the watcher's goal state
  (``var/upgrade/watcher-goal.json``) and removed again at tear-down.
- ``Controller`` is what the ``make run`` process runs beside the stack: it owns the control
  goal-state file (``var/upgrade/goal.json``, ``{"versions": ["v1", "v2"]}``), re-reads it when
  it changes, and reconciles: versions listed are started, versions no longer listed are torn
  down (never the primary). The ``vigil upgrade`` command (``GoalFile``) only edits that file
  and watches ``vigil_versions``, like the delegate watcher takes a goal state of versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vigil_common import logs, topics
from vigil_common.kafka import ensure_topics
from vigil_local.ports import free_port
from vigil_local.supervisor import Supervisor
from vigil_upgrade.adapters.postgres import VersionStore
from vigil_upgrade.domain import UpgradeError, check_version_name

log = logs.get(__name__)

SERVICES = {  # process name: python module, as vigil_local.stack starts them
    "orchestrator": "vigil_orchestrator",
    "task-dispatch": "vigil_dispatch",
    "metric-analyzer": "vigil_metric_analyzer",
    "log-analyzer": "vigil_log_analyzer",
    "delegate-gateway": "vigil_gateway",
}
STARTING, READY, STOPPING, STOPPED = "STARTING", "READY", "STOPPING", "STOPPED"


@dataclass(frozen=True)
class DelegateSpec:
    """The delegate each version gets on this machine (named ``<name>-<version>``: a delegate's
    identity is its account and name, so each version's process has its own name)."""

    account: str
    token: str
    name: str = "delegate-1"
    capabilities: str = "local-process,shell,http,noop"


async def grpc_serving(address: str, timeout: float = 2.0) -> str:
    """'' if the gRPC health service at ``address`` says SERVING, else what it said."""
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return ""
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


class LocalVersions:
    """Starts and stops whole versions as process sets sharing one broker and database."""

    def __init__(self, store: VersionStore, *, bootstrap: str, database_url: str,
                 state_dir: Path, delegate: DelegateSpec | None,
                 environ: Mapping[str, str] | None = None, out: object = None):
        self._store = store
        self._bootstrap = bootstrap
        self._database_url = database_url
        self._state_dir = state_dir
        self._delegate = delegate
        self._environ = dict(os.environ if environ is None else environ)
        self._devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
        self.supervisor = Supervisor(logs_dir=state_dir / "logs", out=out or self._devnull)
        self._owned: dict[str, list[str]] = {}  # version -> process names
        self._grpc: dict[str, list[tuple[str, str]]] = {}  # version -> (name, address)
        self._adopted: dict[str, Callable[[], Awaitable[None]]] = {}
        self._watcher_goal = state_dir / "upgrade" / "watcher-goal.json"
        self._watcher_status = state_dir / "upgrade" / "watcher-status.json"
        self._watcher_started = False

    def owned(self) -> list[str]:
        """Versions this can tear down (started here or adopted with a ``stop``)."""
        return [*self._owned, *self._adopted]

    def adopt(self, version: str, grpc_endpoints: list[tuple[str, str]],
              stop: Callable[[], Awaitable[None]]) -> None:
        """Take over a version whose processes someone else started (the stack's first one);
        ``stop`` tears them down."""
        self._grpc[version] = grpc_endpoints
        self._adopted[version] = stop

    def _env(self, version: str, **extra: str) -> dict[str, str]:
        return {**self._environ, "VIGIL_VERSION": version, "KAFKA_BOOTSTRAP": self._bootstrap,
                "DATABASE_URL": self._database_url, "KAFKA_SESSION_TIMEOUT_MS": "3000",
                "KAFKA_HEARTBEAT_INTERVAL_MS": "300", "PYTHONUNBUFFERED": "1",
                "METRICS_PORT": str(free_port()), **extra}

    async def start(self, version: str, timeout: float = 90.0) -> None:
        """Start every service and the delegate of ``version``; returns once its gRPC
        services serve (delegate connection is checked by the procedure's health check)."""
        check_version_name(version)
        if version in self._grpc:
            return
        await self._store.register(version, STARTING)
        await ensure_topics(self._bootstrap, topics.all_topics(version))
        api, gateway, feedback = (f"127.0.0.1:{free_port()}" for _ in range(3))
        names = []
        for name, module in SERVICES.items():
            env = self._env(version, INSTANCE_ID=f"{name}@{version}")
            if name == "orchestrator":
                env["API_PORT"] = api.rsplit(":", 1)[1]
            elif name == "delegate-gateway":
                env["GATEWAY_PORT"] = gateway.rsplit(":", 1)[1]
            elif name == "log-analyzer":
                env["API_PORT"] = feedback.rsplit(":", 1)[1]
            proc = f"{name}@{version}"
            await self.supervisor.start(proc, [sys.executable, "-m", module], env)
            names.append(proc)
        self._owned[version] = names
        self._grpc[version] = [("orchestrator", api), ("delegate-gateway", gateway),
                               ("log-analyzer", feedback)]
        deadline = time.monotonic() + timeout
        while problems := await self.problems(version):
            if time.monotonic() > deadline or any("exited" in p for p in problems):
                raise UpgradeError(f"{version} did not come up in {timeout:g}s: "
                                   f"{'; '.join(problems)}")
            await asyncio.sleep(0.2)
        if self._delegate is not None:
            await self._watch_delegate(version, gateway)
        await self._store.register(version, READY, api, gateway)
        log.info("version started", version=version, api=api, gateway=gateway)

    async def stop(self, version: str) -> None:
        """Tear the process set of ``version`` down (delegate first, orchestrator last)."""
        if version not in self._owned and version not in self._adopted:
            raise UpgradeError(f"{version} is not a version this controller runs")
        await self._store.register(version, STOPPING)
        if version in self._owned and self._delegate is not None:
            await self._unwatch_delegate(version)
        if version in self._adopted:
            await self._adopted.pop(version)()
        for name in reversed(self._owned.pop(version, [])):
            await self.supervisor.stop(name)
        self._grpc.pop(version, None)
        await self._store.register(version, STOPPED)
        log.info("version stopped", version=version)

    # ---- delegates through the watcher ----------------------------------------------------

    def _delegate_name(self, version: str) -> str:
        assert self._delegate is not None
        return f"{self._delegate.name}-{version}"

    async def _ensure_watcher(self) -> None:
        """One delegate watcher for this machine, as on a customer's delegate host. It reads
        the goal file at start and whenever its modification time changes."""
        if self.supervisor.alive("watcher"):
            return
        d = self._delegate
        assert d is not None
        # Account, token and capabilities reach the delegates through the watcher's
        # environment, so the token is not written into the goal file.
        env = {**self._environ, "DELEGATE_ACCOUNT": d.account, "DELEGATE_TOKEN": d.token,
               "DELEGATE_CAPABILITIES": d.capabilities, "PYTHONUNBUFFERED": "1"}
        await self.supervisor.start("watcher", [
            sys.executable, "-m", "vigil_delegate.watcher", "--goal", str(self._watcher_goal),
            "--status-file", str(self._watcher_status),
            "--log-dir", str(self._state_dir / "logs")], env)

    def _read_watcher_goal(self) -> list[dict[str, object]]:
        try:
            return json.loads(self._watcher_goal.read_text())["delegates"]
        except FileNotFoundError:
            return []

    def _write_watcher_goal(self, entries: list[dict[str, object]]) -> None:
        self._watcher_goal.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._watcher_goal.with_suffix(".tmp")
        tmp.write_text(json.dumps({"delegates": entries}, indent=2) + "\n")
        tmp.replace(self._watcher_goal)

    async def _watch_delegate(self, version: str, gateway: str) -> None:
        """Add this version's delegate to the watcher's goal (it starts it)."""
        name = self._delegate_name(version)
        # Entries left in the file by an earlier run point at gateways that are gone.
        kept = self._read_watcher_goal() if self._watcher_started else []
        self._watcher_started = True
        entries = [e for e in kept if e.get("name") != name]
        entries.append({"name": name, "version": version, "env": {
            "DELEGATE_GATEWAY": gateway,
            "DELEGATE_WORKDIR": str(self._state_dir / f"delegate-{version}")}})
        self._write_watcher_goal(entries)
        await self._ensure_watcher()

    async def _unwatch_delegate(self, version: str, timeout: float = 20.0) -> None:
        """Remove this version's delegate from the watcher's goal; wait until it stopped."""
        name = self._delegate_name(version)
        self._write_watcher_goal([e for e in self._read_watcher_goal() if e.get("name") != name])
        deadline = time.monotonic() + timeout
        while self.supervisor.alive("watcher") and time.monotonic() < deadline:
            try:
                status = json.loads(self._watcher_status.read_text())
            except (OSError, ValueError):
                status = {"delegates": []}
            if not any(d["name"] == name and d["state"] == "running"
                       for d in status["delegates"]):
                return
            await asyncio.sleep(0.1)

    async def discard(self, version: str) -> None:
        """Stop whatever a failed ``start`` of ``version`` left running."""
        if version in self._owned and self._delegate is not None:
            await self._unwatch_delegate(version)
        for name in reversed(self._owned.pop(version, [])):
            await self.supervisor.stop(name)
        self._grpc.pop(version, None)

    async def problems(self, version: str) -> list[str]:
        """Why ``version`` is not serving: exited processes, gRPC health not SERVING."""
        found = []
        for name in self._owned.get(version, []):
            proc = self.supervisor.get(name)
            if proc.returncode is not None:
                found.append(f"{name}: exited with code {proc.returncode}")
        for name, address in self._grpc.get(version, []):
            if status := await grpc_serving(address):
                found.append(f"{name}: {status}")
        return found

    async def close(self) -> None:
        await self.supervisor.stop_all()
        self._devnull.close()


class GoalFile:
    """The control goal state: which versions must run on this machine (JSON file)."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except json.JSONDecodeError as exc:
            raise UpgradeError(f"{self.path}: not JSON: {exc}") from None
        versions = data.get("versions") if isinstance(data, dict) else None
        if not isinstance(versions, list):
            raise UpgradeError(f"{self.path}: versions: must be a list of version names")
        return [check_version_name(str(v)) for v in versions]

    def write(self, versions: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"versions": versions}, indent=2) + "\n")
        tmp.replace(self.path)  # atomic: the controller never reads half a file


class Controller:
    """Reconciles the goal file against ``LocalVersions`` until cancelled."""

    def __init__(self, versions: LocalVersions, store: VersionStore, goal: GoalFile,
                 poll: float = 0.2):
        self._versions = versions
        self._store = store
        self._goal = goal
        self._poll = poll

    async def run(self) -> None:
        seen: float | None = None
        while True:
            with contextlib.suppress(FileNotFoundError):
                mtime = self._goal.path.stat().st_mtime_ns
                if mtime != seen:
                    seen = mtime
                    await self.reconcile_once()
            await asyncio.sleep(self._poll)

    async def reconcile_once(self) -> None:
        try:
            wanted = self._goal.read()
        except UpgradeError as exc:
            log.error("bad goal file", error=str(exc))
            return
        primary = await self._store.primary()
        for version in wanted:
            try:
                await self._versions.start(version)
            except Exception as exc:  # noqa: BLE001 - recorded, the operator decides
                log.error("version failed to start", version=version, error=str(exc))
                await self._versions.discard(version)
                await self._store.register(version, f"FAILED: {exc}"[:500])
        for version, reg in (await self._store.versions()).items():
            if version not in wanted and reg.state.startswith("FAILED"):
                await self._store.register(version, STOPPED)  # cleaned up when it failed
        for version in self._versions.owned():
            if version in wanted:
                continue
            if primary is not None and version == primary.version:
                log.error("not tearing down the primary version", version=version)
                continue
            await self._versions.stop(version)
