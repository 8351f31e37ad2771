"""What the local-process target remembers per service: ``<workdir>/<service>/state.json``.

The file survives delegate restarts, so a restarted delegate still knows which pid runs which
version on which port, and what to roll back to.
"""

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


@dataclass(frozen=True)
class Release:
    """A version as it was deployed to a node, enough to start it again.

    Attributes:
        version: Version label, substituted for ``{version}``.
        command: The argv template, placeholders unsubstituted.
        ready_path: HTTP path polled on ``127.0.0.1:{port}`` until it answers 200.
    """

    version: str
    command: tuple[str, ...]
    ready_path: str


@dataclass(frozen=True)
class NodeRecord:
    """One node of a service: the process running now and the releases it replaced.

    Attributes:
        node: Node name.
        release: What runs now.
        pid: Process id (also its process group id: it leads its own session).
        port: Loopback port it listens on.
        log_file: Application log file (``{log_file}``).
        argv: The command line actually started, to recognise the pid later.
        history: Earlier releases, oldest first; rollback restores the last one.
    """

    node: str
    release: Release
    pid: int
    port: int
    log_file: Path
    argv: tuple[str, ...]
    history: tuple[Release, ...] = field(default=())

    @property
    def version(self) -> str:
        """The version running now."""
        return self.release.version

    def with_history(self, history: tuple[Release, ...]) -> "NodeRecord":
        """Returns a copy whose history is ``history``."""
        return replace(self, history=history)


def load(service_dir: Path) -> dict[str, NodeRecord]:
    """Reads the node records of a service; a service never deployed has none."""
    path = service_dir / STATE_FILE
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: _record_from_json(item) for name, item in raw["nodes"].items()}


def save(service_dir: Path, records: dict[str, NodeRecord]) -> None:
    """Writes the node records of a service atomically (write aside, then rename)."""
    service_dir.mkdir(parents=True, exist_ok=True)
    path = service_dir / STATE_FILE
    partial = path.with_suffix(".json.partial")
    nodes = {name: _record_to_json(record) for name, record in sorted(records.items())}
    partial.write_text(json.dumps({"nodes": nodes}, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _record_to_json(record: NodeRecord) -> dict[str, Any]:
    item = asdict(record)
    item["log_file"] = str(record.log_file)
    item["version"] = record.version
    return item


def _record_from_json(item: dict[str, Any]) -> NodeRecord:
    return NodeRecord(
        node=item["node"],
        release=_release_from_json(item["release"]),
        pid=int(item["pid"]),
        port=int(item["port"]),
        log_file=Path(item["log_file"]),
        argv=tuple(item["argv"]),
        history=tuple(_release_from_json(old) for old in item["history"]),
    )


def _release_from_json(item: dict[str, Any]) -> Release:
    return Release(
        version=item["version"], command=tuple(item["command"]), ready_path=item["ready_path"]
    )
