"""The ``file`` health source: log records from a file or a directory of files.

A configurable regex recognizes a record's first line (named groups ``timestamp``,
``message``, and optionally ``level``, ``logger``, ``thread`` and the host group); any other
line continues the open record, so stack traces stay with it. The host (the service instance
identifier) is a regex group of each line, or else one host per file: ``file_hosts[name]``,
else the file name without its extension (``node-1.log`` -> ``node-1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from vigil.delegate.v1 import health_sources_pb2
from vigil_delegate.health.logs import LogRecord
from vigil_delegate.health.sources.base import (
    LOGS,
    Collected,
    HealthSourceError,
    Progress,
    Window,
    wait_until,
)

DEMO_LINE_REGEX = (r"(?P<timestamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z) "
                   r"(?P<level>[A-Z]+) \[(?P<thread>[^\]]*)\] (?P<logger>\S+) - (?P<message>.*)")
"""The logback-style layout of the demo service (as parsed by health/logs.py)."""


class FileLogSource:
    """Reads log records of the requested hosts from files on the delegate host."""

    kind = "file"
    provides = frozenset({LOGS})

    def __init__(self, config: health_sources_pb2.FileLogSource) -> None:
        """Checks the config.

        Raises:
            HealthSourceError: No path, a regex that does not compile or lacks the
                ``timestamp``/``message`` groups (or the configured host group).
        """
        if not config.path:
            raise HealthSourceError("file.path: must be set")
        try:
            self._line = re.compile(config.line_regex or DEMO_LINE_REGEX)
        except re.error as exc:
            raise HealthSourceError(f"file.line_regex: {exc}") from None
        needed = {"timestamp", "message"} | ({config.host_group} if config.host_group else set())
        missing = needed - set(self._line.groupindex)
        if missing:
            raise HealthSourceError(f"file.line_regex: missing named group(s) "
                                    f"{', '.join(sorted(missing))}")
        self._config = config

    async def collect(self, hosts: Sequence[str], window: Window,
                      progress: Progress) -> Collected:
        await wait_until(window.end)
        wanted = set(hosts)
        logs: dict[str, list[LogRecord]] = {h: [] for h in hosts}
        files = self._files()
        for path, file_host in files:
            if not self._config.host_group and file_host not in wanted:
                continue
            with path.open(encoding="utf-8", errors="replace") as lines:
                for host, record in self._parse(lines, file_host):
                    if host in wanted and window.start <= record.timestamp < window.end:
                        logs[host].append(record)
        for records in logs.values():
            records.sort(key=lambda r: r.timestamp)
        progress(f"file {self._config.path}: {sum(map(len, logs.values()))} records from "
                 f"{len(files)} file(s)")
        return Collected(logs=logs)

    def _files(self) -> list[tuple[Path, str]]:
        """(file, host it belongs to when lines carry no host) for every file to read."""
        root = Path(self._config.path)
        if root.is_file():
            paths = [root]
        elif root.is_dir():
            paths = sorted(p for p in root.glob(self._config.file_glob or "*.log") if p.is_file())
        else:
            raise HealthSourceError(f"file.path: {root} is neither a file nor a directory")
        base = root.parent if root.is_file() else root
        return [(p, self._config.file_hosts.get(str(p.relative_to(base)), p.stem))
                for p in paths]

    def _parse(self, lines: Iterable[str], file_host: str) -> Iterable[tuple[str, LogRecord]]:
        current: re.Match[str] | None = None
        more: list[str] = []
        for raw in lines:
            line = raw.rstrip("\r\n")
            match = self._line.match(line)
            if match is None:
                if current is not None:
                    more.append(line)
                continue
            if current is not None:
                yield self._record(current, more, file_host)
            current, more = match, []
        if current is not None:
            yield self._record(current, more, file_host)

    def _record(self, match: re.Match[str], more: list[str],
                file_host: str) -> tuple[str, LogRecord]:
        groups = match.groupdict()
        host = groups.get(self._config.host_group) if self._config.host_group else file_host
        record = LogRecord(
            timestamp=parse_time(groups["timestamp"], self._config.timestamp_format),
            level=(groups.get("level") or "").upper(), thread=groups.get("thread") or "",
            logger=groups.get("logger") or "", message="\n".join([groups["message"], *more]))
        return host or "", record


def parse_time(text: str, fmt: str = "") -> datetime:
    """Parses a timestamp with ``fmt`` (strptime), else as ISO 8601; naive means UTC.

    Raises:
        HealthSourceError: The text does not parse.
    """
    try:
        moment = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    except ValueError as exc:
        raise HealthSourceError(f"timestamp {text!r}: {exc}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
