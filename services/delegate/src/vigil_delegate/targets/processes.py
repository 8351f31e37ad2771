"""OS process handling for the local-process target: start, probe, check, stop.

Processes run in their own session (and so their own process group), so a Ctrl-C on the
delegate does not reach them and stopping one also stops anything it forked.
"""

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

PLACEHOLDERS = ("{node}", "{version}", "{port}", "{log_file}")
"""The strings replaced in a command template (plain replacement, other braces are kept)."""


class NotReady(Exception):
    """A started process did not become ready; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    """Returns a TCP port on ``host`` that was free a moment ago.

    The port is released before the service binds it; another process could take it in
    between, which then shows up as a failed readiness check rather than a silent conflict.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def substitute(template: Sequence[str], values: dict[str, str]) -> list[str]:
    """Replaces each ``{name}`` of :data:`PLACEHOLDERS` in every argument of ``template``.

    Args:
        template: The argv template.
        values: Placeholder name without braces (``"port"``) -> replacement.
    """
    argv = []
    for argument in template:
        for name, value in values.items():
            argument = argument.replace("{" + name + "}", value)
        argv.append(argument)
    return argv


def spawn(argv: Sequence[str], stdout_path: Path, stderr_path: Path) -> subprocess.Popen[bytes]:
    """Starts ``argv`` in a new session with stdout and stderr appended to the given files.

    Raises:
        OSError: The program could not be executed (not found, not executable).
    """
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    with stdout_path.open("ab") as stdout, stderr_path.open("ab") as stderr:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True,
        )


async def wait_ready(process: subprocess.Popen[bytes], url: str, timeout_s: float) -> None:
    """Polls ``url`` until it answers HTTP 200.

    Raises:
        NotReady: The process exited first, or ``timeout_s`` passed; the message carries the
            exit code or the last probe's outcome.
    """
    deadline = time.monotonic() + timeout_s
    last_probe = "no probe answered yet"
    while True:
        code = process.poll()
        if code is not None:
            raise NotReady(f"exited with code {code} before becoming ready")
        try:
            status = await asyncio.to_thread(_probe, url)
            if status == 200:
                return
            last_probe = f"{url} answered HTTP {status}"
        except OSError as error:
            last_probe = f"{url}: {error}"
        if time.monotonic() >= deadline:
            raise NotReady(f"not ready after {timeout_s:g} s; last probe: {last_probe}")
        await asyncio.sleep(0.1)


def is_running(pid: int, argv: Sequence[str], child: subprocess.Popen[bytes] | None) -> bool:
    """Tells whether ``pid`` is still the process that was started with ``argv``.

    ``child`` is the :class:`subprocess.Popen` when this delegate started the process (it is
    then also reaped). Without it, the pid must exist, not be a zombie and, where ``/proc`` is
    available, run the recorded command line, so a recycled pid is not mistaken for ours.
    """
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except (OSError, IndexError):
        return False
    return state != "Z" and [part.decode(errors="replace") for part in cmdline] == list(argv)


async def terminate(
    pid: int, argv: Sequence[str], child: subprocess.Popen[bytes] | None, grace_s: float
) -> None:
    """Stops the process group of ``pid``: SIGTERM, then SIGKILL after ``grace_s`` seconds.

    A process that is already gone (or whose pid now belongs to another program) is left
    alone. Returns once the process has exited.
    """
    if not is_running(pid, argv, child):
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not is_running(pid, argv, child):
            return
        await asyncio.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    if child is not None:
        await asyncio.to_thread(child.wait)
        return
    while is_running(pid, argv, None):
        await asyncio.sleep(0.05)


def size(path: Path) -> int:
    """Returns the size of ``path`` in bytes, 0 when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def tail(path: Path, offset: int = 0, lines: int = 15) -> str:
    """Returns the last ``lines`` lines written to a text file after byte ``offset``.

    Returns ``""`` when the file does not exist.
    """
    try:
        with path.open("rb") as text_file:
            text_file.seek(offset)
            text = text_file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _probe(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code
