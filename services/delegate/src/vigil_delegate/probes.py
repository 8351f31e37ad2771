"""Answers to broadcast queries ("which delegates can reach cluster X?"), run on the delegate.

Each check is bounded by the query's timeout and never raises: any failure is an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from vigil.delegate.v1 import delegate_pb2


async def answer(query: delegate_pb2.BroadcastQuery,
                 selectors: tuple[str, ...]) -> delegate_pb2.BroadcastAnswer:
    """The answer to one query, computed on this host."""
    check = query.check
    kind = check.WhichOneof("kind")
    timeout = min(query.timeout_seconds or 5.0, 30.0)
    if kind == "has_selector":
        ok = check.has_selector in selectors
        detail = (f"announces {check.has_selector}" if ok
                  else f"does not announce {check.has_selector} (has: "
                       f"{', '.join(selectors) or 'no selectors'})")
    elif kind == "tcp_connect":
        ok, detail = await _tcp(check.tcp_connect, timeout * 0.8)
    else:
        ok, detail = False, f"unsupported check {kind!r}: this delegate cannot answer it"
    return delegate_pb2.BroadcastAnswer(broadcast_id=query.broadcast_id, ok=ok, detail=detail)


async def _tcp(target: str, timeout: float) -> tuple[bool, str]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return False, f"tcp_connect {target!r}: expected host:port"
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except TimeoutError:
        return False, f"{target}: no connection within {timeout:.1f}s"
    except OSError as exc:
        return False, f"{target}: {exc.strerror or exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, f"{target}: connected in {(time.monotonic() - started) * 1000:.1f} ms"
