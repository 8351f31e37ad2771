"""The "local process" deployment target: each node is a process on this host.

For hosts without Kubernetes. A node is replaced start-new-then-stop-old: the new version must
answer its readiness probe before the old process is stopped, so a bad release never takes a
node down. State lives under ``<workdir>/<service>/``:

- ``state.json``: per node, the running release, pid, port, log file and release history;
- ``logs/<node>.log``: the application log (``{log_file}`` in the command);
- ``stdio/<node>.<version>.stdout`` / ``.stderr``: the process's own output.
"""

import asyncio
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vigil_delegate.targets import process_state, processes
from vigil_delegate.targets.process_state import NodeRecord, Release

HOST = "127.0.0.1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

Progress = Callable[[str], None]


class DeploymentError(Exception):
    """A node could not be moved to a release; the node keeps what it ran before.

    Attributes:
        node: The node that failed.
        reason: Why, in one line (exit code, timeout and last probe ...).
        output: Last lines of the new process's stderr and log file, for the operator.
    """

    def __init__(self, node: str, reason: str, output: str = "") -> None:
        message = f"node {node}: {reason}"
        if output:
            message += f"\n{output}"
        super().__init__(message)
        self.node = node
        self.reason = reason
        self.output = output


@dataclass(frozen=True)
class NodeInfo:
    """What runs on one node, as observed now.

    Attributes:
        node: Node name.
        version: Version recorded as running.
        port: Loopback port of the process.
        pid: Process id.
        log_file: Application log file of the node.
        alive: Whether the recorded process is actually running (checked, not assumed).
    """

    node: str
    version: str
    port: int
    pid: int
    log_file: Path
    alive: bool


@dataclass(frozen=True)
class DeployResult:
    """Outcome of a deploy or rollback.

    Attributes:
        service: Service name.
        nodes: The requested nodes that now run a process, in request order.
        removed: Nodes a rollback removed (they had no earlier release).
    """

    service: str
    nodes: tuple[NodeInfo, ...]
    removed: tuple[str, ...] = ()


class LocalProcessTarget:
    """Deploys services as local processes and rolls them back.

    Deploys and rollbacks of one service run one at a time; different services proceed
    independently. Processes are started in their own session, so they outlive the delegate
    unless :meth:`stop_all` is called.
    """

    def __init__(self, workdir: Path, *, stop_grace_s: float = 5.0) -> None:
        """Creates a target keeping its state under ``workdir``.

        Args:
            workdir: Directory for state, logs and process output; created when missing.
            stop_grace_s: Seconds between SIGTERM and SIGKILL when stopping a process.
        """
        self._workdir = workdir
        self._stop_grace_s = stop_grace_s
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def deploy(
        self,
        service: str,
        version: str,
        nodes: list[str],
        command: list[str],
        on_progress: Progress,
        *,
        ready_path: str = "/healthz",
        ready_timeout_s: float = 20.0,
    ) -> DeployResult:
        """Moves each node, one after another, to ``version``.

        A node already running ``version`` alive is left as it is, so a repeated deploy is
        harmless. Otherwise the new process is started with ``command`` (``{node}``,
        ``{version}``, ``{port}``, ``{log_file}`` substituted), must answer 200 on
        ``http://127.0.0.1:{port}{ready_path}`` within ``ready_timeout_s``, and only then is
        the previous process stopped and its release pushed on the node's history.

        Raises:
            DeploymentError: A node did not become ready. Its new process is stopped and its
                previous process keeps running; nodes before it stay on ``version``.
            ValueError: A name is not a plain file-name-like word, or ``command`` is empty.
        """
        _check_names(service, nodes)
        if not command:
            raise ValueError("command must not be empty")
        release = Release(version=version, command=tuple(command), ready_path=ready_path)
        service_dir = self._workdir / service
        async with self._lock(service):
            records = process_state.load(service_dir)
            for node in nodes:
                current = records.get(node)
                if current is not None and current.version == version and self._alive(current):
                    on_progress(f"{node}: already runs {version} (pid {current.pid})")
                    continue
                started = await self._start(service_dir, node, release, ready_timeout_s,
                                            on_progress)
                history: tuple[Release, ...] = ()
                if current is not None:
                    await self._stop(current, on_progress)
                    pushed = (current.release,) if current.version != version else ()
                    history = current.history + pushed
                records[node] = started.with_history(history)
                process_state.save(service_dir, records)
                on_progress(f"{node}: runs {version} on port {started.port}")
            return DeployResult(service, tuple(self._info(records[n]) for n in nodes))

    async def rollback(
        self,
        service: str,
        nodes: list[str],
        on_progress: Progress,
        *,
        expected_version: str | None = None,
        ready_timeout_s: float = 20.0,
    ) -> DeployResult:
        """Undoes the last deploy on each node.

        A node with history gets its previous release back (started, ready, then the current
        process stopped) and that release leaves the history. A node without history (a fresh
        canary) is stopped and forgotten. A node that is not deployed is a no-op, reported
        through ``on_progress``.

        Args:
            expected_version: When given, only nodes running this version are rolled back and
                the others are reported and left alone, which makes a repeated rollback of the
                same release a no-op.

        Raises:
            DeploymentError: The previous release did not become ready; the current process
                keeps running.
        """
        _check_names(service, nodes)
        service_dir = self._workdir / service
        removed: list[str] = []
        async with self._lock(service):
            records = process_state.load(service_dir)
            for node in nodes:
                current = records.get(node)
                if current is None:
                    on_progress(f"{node}: not deployed, nothing to roll back")
                    continue
                if expected_version is not None and current.version != expected_version:
                    on_progress(f"{node}: runs {current.version}, not {expected_version}; "
                                "nothing to roll back")
                    continue
                if not current.history:
                    await self._stop(current, on_progress)
                    del records[node]
                    removed.append(node)
                    on_progress(f"{node}: removed (no earlier release)")
                else:
                    previous = current.history[-1]
                    started = await self._start(service_dir, node, previous, ready_timeout_s,
                                                on_progress)
                    await self._stop(current, on_progress)
                    records[node] = started.with_history(current.history[:-1])
                    on_progress(f"{node}: rolled back {current.version} -> {previous.version}")
                process_state.save(service_dir, records)
            kept = tuple(self._info(records[n]) for n in nodes if n in records)
            return DeployResult(service, kept, tuple(removed))

    def nodes(self, service: str) -> list[NodeInfo]:
        """Lists the recorded nodes of ``service`` by name, each checked for being alive."""
        _check_names(service, [])
        records = process_state.load(self._workdir / service)
        return [self._info(records[name]) for name in sorted(records)]

    async def stop_all(self, service: str | None = None) -> None:
        """Stops every process of ``service`` (of every service when None).

        Also stops processes still being started by a deploy in flight. Records stay in
        ``state.json``; :meth:`nodes` then reports them with ``alive=False``.
        """
        services = [service] if service is not None else [
            path.parent.name for path in self._workdir.glob(f"*/{process_state.STATE_FILE}")
        ]
        for name in services:
            for record in process_state.load(self._workdir / name).values():
                await self._stop(record, lambda _message: None)
        if service is None:
            for pid, child in list(self._children.items()):
                await processes.terminate(pid, child.args, child, self._stop_grace_s)
                self._children.pop(pid, None)

    async def _start(
        self,
        service_dir: Path,
        node: str,
        release: Release,
        ready_timeout_s: float,
        on_progress: Progress,
    ) -> NodeRecord:
        port = processes.free_port(HOST)
        log_file = service_dir / "logs" / f"{node}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = processes.substitute(release.command, {
            "node": node, "version": release.version, "port": str(port), "log_file": str(log_file),
        })
        stdio = service_dir / "stdio" / f"{node}.{release.version}"
        stderr_path = stdio.with_name(stdio.name + ".stderr")
        # Both files may already hold output of earlier processes; report only the new part.
        offsets = (processes.size(stderr_path), processes.size(log_file))
        try:
            child = processes.spawn(argv, stdio.with_name(stdio.name + ".stdout"), stderr_path)
        except OSError as error:
            raise DeploymentError(node, f"could not start {argv[0]}: {error}") from error
        self._children[child.pid] = child
        url = f"http://{HOST}:{port}{release.ready_path}"
        on_progress(f"{node}: started {release.version} (pid {child.pid}), waiting for {url}")
        try:
            await processes.wait_ready(child, url, ready_timeout_s)
        except processes.NotReady as error:
            await self._stop_child(child)
            output = (
                f"--- stderr (last lines) ---\n{processes.tail(stderr_path, offsets[0])}\n"
                f"--- {log_file.name} (last lines) ---\n{processes.tail(log_file, offsets[1])}"
            )
            raise DeploymentError(node, f"{release.version} {error}", output) from None
        except asyncio.CancelledError:
            await self._stop_child(child)
            raise
        return NodeRecord(node=node, release=release, pid=child.pid, port=port,
                          log_file=log_file, argv=tuple(argv))

    async def _stop(self, record: NodeRecord, on_progress: Progress) -> None:
        child = self._children.get(record.pid)
        if not processes.is_running(record.pid, record.argv, child):
            on_progress(f"{record.node}: previous process {record.pid} was not running")
        else:
            on_progress(f"{record.node}: stopping {record.version} (pid {record.pid})")
            await processes.terminate(record.pid, record.argv, child, self._stop_grace_s)
        self._children.pop(record.pid, None)

    async def _stop_child(self, child: subprocess.Popen[bytes]) -> None:
        await processes.terminate(child.pid, child.args, child, self._stop_grace_s)
        self._children.pop(child.pid, None)

    def _alive(self, record: NodeRecord) -> bool:
        return processes.is_running(record.pid, record.argv, self._children.get(record.pid))

    def _info(self, record: NodeRecord) -> NodeInfo:
        return NodeInfo(node=record.node, version=record.version, port=record.port,
                        pid=record.pid, log_file=record.log_file, alive=self._alive(record))

    def _lock(self, service: str) -> asyncio.Lock:
        return self._locks.setdefault(service, asyncio.Lock())


def _check_names(service: str, nodes: Sequence[str]) -> None:
    # Names become path components under the workdir; keep them from escaping it.
    for name in (service, *nodes):
        if not _NAME.match(name):
            raise ValueError(f"invalid name {name!r}: use letters, digits, '.', '_', '-'")
