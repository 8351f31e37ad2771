"""`vigil delegates list|probe`: who is connected where, and broadcast probes.

Both talk to any delegate-gateway instance's DelegateAdmin service (``--gateway``, default
``$VIGIL_GATEWAY`` or 127.0.0.1:50061; ``--ca`` for a gateway with TLS) with the account's
API key (``--api-key``, default ``$VIGIL_API_KEY``), which decides the account.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import grpc

from vigil_cli import client


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("delegates", help="connected delegates and broadcast probes")
    dsub = d.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateway", default=os.environ.get("VIGIL_GATEWAY", "127.0.0.1:50061"),
                        help="a delegate-gateway address (host:port)")
    common.add_argument("--ca", help="PEM file of the CA of the gateway's TLS certificate")
    common.add_argument("--api-key", default=os.environ.get("VIGIL_API_KEY", ""),
                        help="API key of the account (env VIGIL_API_KEY)")
    common.add_argument("--account", default="",
                        help="account id (default: the API key's account)")
    ls = dsub.add_parser("list", parents=[common], help="delegates and the gateway each is on")
    ls.add_argument("--connected", action="store_true", help="only those connected now")
    ls.set_defaults(func=lambda a: client.run(_list(a)))
    probe = dsub.add_parser("probe", parents=[common],
                            help="ask every connected delegate with a capability a question")
    probe.add_argument("--capability", required=True)
    probe.add_argument("--selector", action="append", default=[],
                       help="only delegates with this selector (repeatable)")
    what = probe.add_mutually_exclusive_group(required=True)
    what.add_argument("--tcp", metavar="HOST:PORT", help="can it open a TCP connection there?")
    what.add_argument("--has-selector", metavar="TAG", help="does it announce this selector?")
    probe.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for answers")
    probe.set_defaults(func=lambda a: asyncio.run(_probe(a)))


def _auth(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {args.api_key}"),)


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    if args.ca:
        with open(args.ca, "rb") as f:
            return grpc.aio.secure_channel(args.gateway, grpc.ssl_channel_credentials(f.read()))
    return grpc.aio.insecure_channel(args.gateway)


async def _list(args: argparse.Namespace) -> int:
    from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc

    async with _channel(args) as channel:
        reply = await delegate_pb2_grpc.DelegateAdminStub(channel).ListDelegates(
            delegate_pb2.ListDelegatesRequest(account_id=args.account,
                                              connected_only=args.connected),
            metadata=_auth(args), timeout=10)
    rows = [("NAME", "STATE", "GATEWAY", "SESSION", "SINCE", "VERSION", "CAPABILITIES",
             "SELECTORS")]
    rows += [(d.name, "connected" if d.connected else "gone", d.gateway_id, str(d.session),
              d.since, d.version, ",".join(d.capabilities), ",".join(d.selectors))
             for d in reply.delegates]
    _table(rows)
    return 0


async def _probe(args: argparse.Namespace) -> int:
    from vigil.delegate.v1 import delegate_pb2, delegate_pb2_grpc
    from vigil.delegate.v1 import tasks_pb2 as spec_pb2

    check = (spec_pb2.ProbeCheck(tcp_connect=args.tcp) if args.tcp
             else spec_pb2.ProbeCheck(has_selector=args.has_selector))
    async with _channel(args) as channel:
        try:
            done = await delegate_pb2_grpc.DelegateAdminStub(channel).Probe(
                delegate_pb2.ProbeRequest(account_id=args.account, capability=args.capability,
                                          selectors=args.selector, check=check,
                                          timeout_seconds=args.timeout),
                metadata=_auth(args), timeout=args.timeout + 15)
        except grpc.aio.AioRpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    rows = [("DELEGATE", "ANSWER", "DETAIL")]
    rows += [(a.name, ("ok" if a.ok else "no") if a.answered else "missing", a.detail)
             for a in done.answers]
    _table(rows)
    print(done.summary)
    return 0 if done.answers and done.ok_count == len(done.answers) else 3


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
