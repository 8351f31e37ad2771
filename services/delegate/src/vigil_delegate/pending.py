"""Reports not yet acknowledged by a gateway, kept on disk.

A task's reports (health data, then its result) are written here before they are sent and
removed when the gateway acknowledges the result. After a reconnect, or a restart of the
delegate, everything still here is sent again; the gateway drops what it already has by
(task, attempt, kind), so nothing is lost and nothing is delivered twice.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from urllib.parse import quote

from vigil.delegate.v1 import delegate_pb2

_LEN = struct.Struct(">I")


class PendingReports:
    def __init__(self, directory: Path):
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, task_id: str, attempt: int) -> Path:
        # Task ids may hold "/" (e.g. "<execution>/<step>"): one flat, reversible file name.
        return self._dir / f"{quote(task_id, safe='')}.{attempt}.reports"

    def put(self, task_id: str, attempt: int,
            reports: list[delegate_pb2.DelegateMessage]) -> None:
        """Store a task attempt's reports durably (atomic rename, fsynced)."""
        tmp = self._path(task_id, attempt).with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for r in reports:
                data = r.SerializeToString()
                f.write(_LEN.pack(len(data)) + data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(task_id, attempt))

    def has(self, task_id: str, attempt: int) -> bool:
        return self._path(task_id, attempt).exists()

    def ack(self, task_id: str, attempt: int) -> None:
        self._path(task_id, attempt).unlink(missing_ok=True)

    def all(self) -> list[list[delegate_pb2.DelegateMessage]]:
        """Every stored task attempt's reports, oldest first."""
        out = []
        for path in sorted(self._dir.glob("*.reports"), key=lambda p: p.stat().st_mtime):
            data, reports, pos = path.read_bytes(), [], 0
            while pos + _LEN.size <= len(data):
                (n,) = _LEN.unpack_from(data, pos)
                reports.append(delegate_pb2.DelegateMessage.FromString(
                    data[pos + _LEN.size:pos + _LEN.size + n]))
                pos += _LEN.size + n
            out.append(reports)
        return out
