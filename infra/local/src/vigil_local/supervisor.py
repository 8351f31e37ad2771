"""A small process supervisor for `make run` and the end-to-end tests.

Each process runs in its own session and process group, so stopping it also stops anything it
spawned. Output lines are copied to our stdout behind a fixed-width name tag, like
docker compose does, and optionally to `logs_dir/<name>.log`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TextIO

_LINE_LIMIT = 1 << 20  # bytes; a longer line is dropped with a marker, not buffered forever
_DRAIN_AFTER_EXIT = 2.0  # seconds to let the last output lines arrive after a process exits


@dataclass(eq=False)
class ManagedProcess:
    """One supervised process.

    Attributes:
        name: the name it was started under, unique among live processes.
        argv: the command line.
        pid: its process id, which is also its process group id.
        log_path: where its output is also written, if the supervisor has a logs_dir.
    """

    name: str
    argv: list[str]
    pid: int
    log_path: Path | None
    _process: asyncio.subprocess.Process = field(repr=False)
    _pump: asyncio.Task[None] = field(repr=False)
    _stopping: bool = field(default=False, repr=False)

    @property
    def returncode(self) -> int | None:
        """Exit code once it has exited (negative: killed by that signal), else None."""
        return self._process.returncode

    @property
    def stopped_by_supervisor(self) -> bool:
        """True once `stop()` or `stop_all()` asked it to end."""
        return self._stopping

    async def wait(self) -> int:
        """Wait for exit and for its remaining output lines; return the exit code."""
        code = await self._process.wait()
        try:
            await asyncio.wait_for(asyncio.shield(self._pump), _DRAIN_AFTER_EXIT)
        except TimeoutError:
            # A child it left behind still holds the pipe; its lines keep flowing until it ends.
            pass
        return code


class Supervisor:
    """Starts, watches and stops local processes from asyncio code.

    `async with Supervisor() as sup:` stops everything on leaving the block.

    Args:
        logs_dir: if given, each process's output is appended to `logs_dir/<name>.log` too.
        out: text stream for tagged output lines; None means the current `sys.stdout`.
        tag_width: width of the name tag in front of each line.
    """

    def __init__(
        self,
        *,
        logs_dir: Path | None = None,
        out: TextIO | None = None,
        tag_width: int = 18,
    ) -> None:
        self._logs_dir = logs_dir
        self._out = out
        self._tag_width = tag_width
        self._procs: dict[str, ManagedProcess] = {}

    @property
    def processes(self) -> list[ManagedProcess]:
        """All processes started and not yet stopped, in start order (exited ones included)."""
        return list(self._procs.values())

    def get(self, name: str) -> ManagedProcess:
        """Return the process started under `name`; KeyError if none."""
        return self._procs[name]

    async def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | str | None = None,
    ) -> ManagedProcess:
        """Start `argv` under `name` in a new session and process group.

        Args:
            env: the child's complete environment (merge `os.environ` in yourself);
                `PYTHONUNBUFFERED=1` is added unless present, so Python output arrives per line.
            cwd: working directory, default ours.

        Raises:
            ValueError: a live process already has this name.
        """
        previous = self._procs.get(name)
        if previous is not None and previous.returncode is None:
            raise ValueError(f"process {name!r} is already running (pid {previous.pid})")
        log_path = log_file = None
        if self._logs_dir is not None:
            log_path = self._logs_dir / f"{name}.log"
            log_file = await asyncio.to_thread(_open_log, log_path)
        process = await asyncio.create_subprocess_exec(
            *argv,
            env={"PYTHONUNBUFFERED": "1", **env},
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            limit=_LINE_LIMIT,
        )
        assert process.stdout is not None
        pump = asyncio.create_task(
            self._pump(name, process.stdout, log_file), name=f"supervisor-pump-{name}"
        )
        managed = ManagedProcess(name, list(argv), process.pid, log_path, process, pump)
        self._procs[name] = managed
        return managed

    def alive(self, name: str) -> bool:
        """True while the process started under `name` has not exited."""
        managed = self._procs.get(name)
        return managed is not None and managed.returncode is None

    async def stop(self, name: str, timeout: float = 10.0) -> int | None:
        """Stop one process: SIGTERM to its group, SIGKILL after `timeout` seconds.

        Returns its exit code, or None if no process has that name. Forgets the name.
        """
        managed = self._procs.get(name)
        if managed is None:
            return None
        await self._terminate([managed], timeout)
        del self._procs[name]
        return managed.returncode

    async def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every process, leaving none of them or their group members behind.

        SIGTERM goes to each process group in reverse start order; whatever is still running
        `timeout` seconds later gets SIGKILL.
        """
        procs = list(reversed(self._procs.values()))
        await self._terminate(procs, timeout)
        self._procs.clear()

    async def wait_any_exit(self) -> ManagedProcess | None:
        """Wait until a process exits without having been asked to; return it.

        Returns at once if one already has. Watches the processes running at the time of the
        call; returns None if there are none or all of them were stopped deliberately meanwhile.
        The caller decides what an exit means (read `returncode`).
        """
        for managed in self._procs.values():
            if managed.returncode is not None and not managed.stopped_by_supervisor:
                await managed.wait()
                return managed
        waits = {
            asyncio.ensure_future(m.wait()): m
            for m in self._procs.values()
            if not m.stopped_by_supervisor
        }
        try:
            while waits:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    managed = waits.pop(task)
                    if not managed.stopped_by_supervisor:
                        return managed
            return None
        finally:
            for task in waits:
                task.cancel()
            if waits:
                await asyncio.gather(*waits, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_all()

    async def _terminate(self, procs: list[ManagedProcess], timeout: float) -> None:
        for managed in procs:
            managed._stopping = True
            _signal_group_of(managed, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for managed in procs:
            await _wait_group_gone(managed, deadline)
        for managed in procs:
            _signal_group_of(managed, signal.SIGKILL)
        for managed in procs:
            await _wait_group_gone(managed, time.monotonic() + 5.0)
            await managed.wait()
            if not managed._pump.done():
                # Only a process that left the group (setsid) can still hold the pipe.
                managed._pump.cancel()
                await asyncio.gather(managed._pump, return_exceptions=True)

    async def _pump(
        self, name: str, stream: asyncio.StreamReader, log_file: IO[str] | None
    ) -> None:
        """Copy output lines until EOF; closes `log_file` at the end."""
        tag = f"{name[: self._tag_width]:<{self._tag_width}} | "
        try:
            while True:
                try:
                    raw = await stream.readline()
                except ValueError:
                    raw = f"[line longer than {_LINE_LIMIT} bytes dropped]\n".encode()
                if not raw:
                    return
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                out = self._out if self._out is not None else sys.stdout
                out.write(f"{tag}{line}\n")
                out.flush()
                if log_file is not None:
                    log_file.write(line + "\n")
                    log_file.flush()
        finally:
            if log_file is not None:
                log_file.close()


def _open_log(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8")  # closed by Supervisor._pump


def _signal_group_of(managed: ManagedProcess, sig: signal.Signals) -> None:
    # Once the leader is reaped its pid may be reused; signal the group only while it has
    # members, which keeps the id from being handed out again.
    if managed.returncode is None or group_members(managed.pid):
        _signal_group(managed.pid, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        # Gone already; PermissionError is what macOS reports for a group of zombies.
        pass


async def _wait_group_gone(managed: ManagedProcess, deadline: float) -> None:
    """Wait until the leader has exited and no live process remains in its group."""
    try:
        await asyncio.wait_for(managed._process.wait(), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        return
    while group_members(managed.pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group `pgid`, read from /proc (Linux)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, pgrp, ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members
