"""The delegate streams one gateway instance holds: who, which account and token, and the
queue of messages going down to each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import grpc
from prometheus_client import Gauge

from vigil.delegate.v1 import delegate_pb2

CONNECTED = Gauge("vigil_gateway_connected_delegates", "Delegate streams held by this gateway")


@dataclass(eq=False)
class Link:
    """One live delegate stream."""

    delegate_id: str
    account_id: str
    token_hash: str
    capabilities: frozenset[str] = frozenset()
    # Messages going down; ``None`` (queued by ``close``) ends the stream's writer.
    queue: asyncio.Queue[delegate_pb2.GatewayMessage | None] = field(
        default_factory=asyncio.Queue)
    # True once the stream was ended from outside; ``close_code`` and ``close_reason`` are its
    # status.
    closed: bool = False
    close_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    close_reason: str = ""

    def close(self, code: grpc.StatusCode, reason: str) -> None:
        if not self.closed:
            self.close_code, self.close_reason, self.closed = code, reason, True
            self.queue.put_nowait(None)


class Connections:
    """The delegates connected to this gateway instance and their outgoing queues."""

    def __init__(self) -> None:
        self._links: dict[str, Link] = {}

    def __len__(self) -> int:
        return len(self._links)

    def add(self, link: Link) -> Link:
        """Hold ``link``; a previous stream of the same delegate here is closed."""
        old = self._links.get(link.delegate_id)
        if old is not None:
            old.close(grpc.StatusCode.ABORTED, "replaced by a newer stream of the same delegate")
        self._links[link.delegate_id] = link
        CONNECTED.set(len(self._links))
        return link

    def remove(self, link: Link) -> None:
        if self._links.get(link.delegate_id) is link:
            del self._links[link.delegate_id]
        CONNECTED.set(len(self._links))

    def get(self, delegate_id: str, account_id: str) -> Link | None:
        link = self._links.get(delegate_id)
        return link if link is not None and link.account_id == account_id else None

    def send(self, delegate_id: str, account_id: str, msg: delegate_pb2.GatewayMessage) -> bool:
        """Queue a message for a delegate connected here (and of that account)."""
        link = self.get(delegate_id, account_id)
        if link is None:
            return False
        link.queue.put_nowait(msg)
        return True

    def token_keys(self) -> set[tuple[str, str]]:
        """(account, token hash) of every live stream."""
        return {(link.account_id, link.token_hash) for link in self._links.values()}

    def close_tokens(self, keys: Iterable[tuple[str, str]], reason: str) -> int:
        """Close every stream opened with one of these (account, token hash); returns how many."""
        gone = set(keys)
        links = [ln for ln in self._links.values() if (ln.account_id, ln.token_hash) in gone]
        for link in links:
            link.close(grpc.StatusCode.UNAUTHENTICATED, reason)
        return len(links)
