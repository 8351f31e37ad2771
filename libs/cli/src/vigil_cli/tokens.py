"""`vigil token create|revoke`, `vigil apikey create`: credentials (only hashes are stored)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from vigil_common import db
from vigil_common.config import DEFAULT_DATABASE_URL


def register(sub: argparse._SubParsersAction) -> None:
    token = sub.add_parser("token", help="delegate tokens (talks to the database directly)")
    tsub = token.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="create a token; it is printed once")
    create.add_argument("--account", required=True)
    create.add_argument("--description", default="")
    create.set_defaults(func=lambda a: asyncio.run(_create(a)))
    revoke = tsub.add_parser("revoke", help="revoke a token")
    revoke.add_argument("--account", required=True)
    revoke.add_argument("token")
    revoke.set_defaults(func=lambda a: asyncio.run(_revoke(a)))

    apikey = sub.add_parser("apikey", help="API keys (talks to the database directly)")
    asub = apikey.add_subparsers(dest="action", required=True)
    create_key = asub.add_parser("create", help="create an API key; it is printed once")
    create_key.add_argument("--account", required=True)
    create_key.add_argument("--name", required=True, help="who uses it (shown in the audit log)")
    create_key.set_defaults(func=lambda a: asyncio.run(_create_key(a)))


def _url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


async def _create(args: argparse.Namespace) -> int:
    from vigil_gateway.adapters.postgres import create_token

    async with db.pool(_url(), max_size=1) as pool:
        print(await create_token(pool, args.account, args.description))
    return 0


async def _create_key(args: argparse.Namespace) -> int:
    from vigil_orchestrator.adapters.postgres import PostgresStore

    async with db.pool(_url(), max_size=1) as pool:
        print(await PostgresStore(pool).create_api_key(args.account, args.name))
    return 0


async def _revoke(args: argparse.Namespace) -> int:
    from vigil_gateway.adapters.postgres import revoke_token

    async with db.pool(_url(), max_size=1) as pool:
        if not await revoke_token(pool, args.account, args.token):
            print("error: no such active token for this account", file=sys.stderr)
            return 1
    print("revoked")
    return 0
