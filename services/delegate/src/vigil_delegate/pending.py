"""Reports not yet acknowledged by a gateway, kept on disk.

A task's reports (health data, then its result) are written here before they are sent and
removed when the gateway acknowledges the result. After a reconnect, or a restart of the
delegate, everything still here is sent again; the gateway drops what it already has by
(task, attempt, kind), so nothing is lost and nothing is delivered twice.

Reports sent while a task still runs (the partial metrics batches of a health-collection task,
kind ``metrics/<first interval>`` at the gateway) are appended to ``<task>.<attempt>.partial``
first; the task's final ``put`` moves them into its ``.reports`` file. A ``.partial`` file is
sent again after a reconnect like the rest, but does not make the task count as finished
(``has``): a task re-assigned after a restart runs again, and the gateway drops the batches it
already has.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from urllib.parse import quote

from vigil.delegate.v1 import delegate_pb2

_LEN = struct.Struct(">I")
_PARTIAL_KEPT_S = 86400.0  # a running task's batches left by a task that never finished here


class PendingReports:
    def __init__(self, directory: Path):
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, task_id: str, attempt: int, suffix: str = "reports") -> Path:
        # Task ids may hold "/" (e.g. "<execution>/<step>"): one flat, reversible file name.
        return self._dir / f"{quote(task_id, safe='')}.{attempt}.{suffix}"

    def put(self, task_id: str, attempt: int,
            reports: list[delegate_pb2.DelegateMessage]) -> None:
        """Store a task attempt's final reports durably (atomic rename, fsynced), after the
        reports it sent while running (``add``), which are kept in the same file."""
        partial = self._path(task_id, attempt, "partial")
        earlier = _read(partial) if partial.exists() else []
        tmp = self._path(task_id, attempt).with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for r in [*earlier, *reports]:
                data = r.SerializeToString()
                f.write(_LEN.pack(len(data)) + data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(task_id, attempt))
        partial.unlink(missing_ok=True)

    def add(self, task_id: str, attempt: int, report: delegate_pb2.DelegateMessage) -> None:
        """Append one report a still running task sends (fsynced before it is sent)."""
        data = report.SerializeToString()
        with open(self._path(task_id, attempt, "partial"), "ab") as f:
            f.write(_LEN.pack(len(data)) + data)
            f.flush()
            os.fsync(f.fileno())

    def has(self, task_id: str, attempt: int) -> bool:
        return self._path(task_id, attempt).exists()

    def ack(self, task_id: str, attempt: int) -> None:
        self._path(task_id, attempt).unlink(missing_ok=True)
        self._path(task_id, attempt, "partial").unlink(missing_ok=True)

    def all(self) -> list[list[delegate_pb2.DelegateMessage]]:
        """Every stored task attempt's reports (finished or still running), oldest first."""
        stale = time.time() - _PARTIAL_KEPT_S
        for path in self._dir.glob("*.partial"):  # its task ended elsewhere long ago
            if path.stat().st_mtime < stale:
                path.unlink(missing_ok=True)
        paths = [*self._dir.glob("*.reports"), *self._dir.glob("*.partial")]
        return [_read(path) for path in sorted(paths, key=lambda p: p.stat().st_mtime)]


def _read(path: Path) -> list[delegate_pb2.DelegateMessage]:
    """The length-prefixed messages of a file; a torn last record (a crash while appending)
    is left out."""
    data, reports, pos = path.read_bytes(), [], 0
    while pos + _LEN.size <= len(data):
        (n,) = _LEN.unpack_from(data, pos)
        if pos + _LEN.size + n > len(data):
            break
        reports.append(delegate_pb2.DelegateMessage.FromString(
            data[pos + _LEN.size:pos + _LEN.size + n]))
        pos += _LEN.size + n
    return reports
