"""One stack for all end-to-end tests: the same processes `make run` starts (embedded broker,
real PostgreSQL in a database of its own, five services and a delegate)."""

import io
import os
import uuid
from pathlib import Path

import pytest_asyncio

from vigil_delegate.targets import LocalProcessTarget
from vigil_local.database import drop_database
from vigil_local.stack import Stack, StackConfig


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.split(")")[-1].split()[0] != "Z"


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def stack(tmp_path_factory):
    environ = dict(os.environ)
    if "DATABASE_URL" not in environ:
        name = f"vigil_e2e_{uuid.uuid4().hex[:8]}"
        config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), database_name=name,
                             environ=environ)
    else:
        config = StackConfig(state_dir=tmp_path_factory.mktemp("stack"), environ=environ)
    out = io.StringIO()
    s = Stack(config, out=out)
    async with s:
        yield s
        nodes = LocalProcessTarget(s.delegate_workdir / "local-process").nodes("demo")
    pids = [p.pid for p in s.supervisor.processes] + [n.pid for n in nodes]
    assert not [p for p in pids if _alive(p)], "a stack process outlived the stack"
    if "DATABASE_URL" not in environ:
        await drop_database(s.database.url)


