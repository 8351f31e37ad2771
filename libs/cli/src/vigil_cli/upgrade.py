"""`vigil upgrade start|switch|rollback|finish|status|run`: upgrades of Vigil itself (issue 4).

    vigil upgrade status             primary, versions, their health, executions, delegates
    vigil upgrade start vN+1         bring vN+1 up beside the primary (no traffic yet)
    vigil upgrade switch [vN+1]      verify vN+1's health, then make it the primary
    vigil upgrade rollback           flip the primary back to the previous version, instantly
    vigil upgrade finish [--wait S]  tear down the non-primary versions once idle
    vigil upgrade run vN+1           all of it: tear down n-1, start n+1, verify, switch

Talks to PostgreSQL (--database-url / DATABASE_URL) for the primary record. Locally
(default) versions are process sets run by `make run`, controlled through its goal file
(--goal, default var/upgrade/goal.json); with --kubernetes, Deployments/Services/Ingress per
version in --namespace and the primary Service's selector (docs/upgrades.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser("upgrade", help="upgrade Vigil itself without downtime")
    usub = up.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/vigil"))
    common.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP", ""),
                        help="publish PrimaryVersionChanged at once (else the router relays it)")
    common.add_argument("--goal", type=Path, default=Path(os.environ.get(
        "VIGIL_UPGRADE_GOAL", "var/upgrade/goal.json")), help="local: the make run goal file")
    common.add_argument("--min-delegates", type=int, default=1,
                        help="delegates of the new version that must be connected to switch")
    common.add_argument("--kubernetes", action="store_true",
                        help="versions are Kubernetes objects (kubeconfig or in-cluster)")
    common.add_argument("--namespace", default="vigil")
    common.add_argument("--image", default="ghcr.io/vigil/vigil:{version}",
                        help="Kubernetes: image of a version ({version} is replaced)")
    common.add_argument("--timeout", type=float, default=600.0, help="seconds")
    common.add_argument("--reason", default="")
    for name, needs_version, text in [
            ("status", False, "primary, versions, health, executions, delegates"),
            ("start", True, "bring a version up beside the primary"),
            ("switch", None, "verify a version's health and make it the primary"),
            ("rollback", False, "flip the primary back to the previous version"),
            ("finish", False, "tear down non-primary versions once nothing runs on them"),
            ("run", True, "the whole procedure to a version")]:
        p = usub.add_parser(name, parents=[common], help=text)
        if needs_version:
            p.add_argument("version")
        elif needs_version is None:
            p.add_argument("version", nargs="?", help="default: the newest non-primary")
        if name == "finish":
            p.add_argument("--wait", type=float, default=0.0,
                           help="seconds to wait for running executions to finish")
        p.set_defaults(func=lambda a: asyncio.run(_main(a)))


async def _main(args: argparse.Namespace) -> int:
    from vigil_common import db
    from vigil_upgrade.adapters.postgres import VersionStore
    from vigil_upgrade.domain import UpgradeError, version_number
    from vigil_upgrade.procedure import LocalPlatform, Procedure

    async with db.pool(args.database_url, max_size=2) as pool:
        store = VersionStore(pool)
        if args.kubernetes:
            from vigil_upgrade.adapters import k8s
            platform = k8s.KubernetesPlatform(k8s.api_client(), args.namespace, args.image)
        else:
            from vigil_upgrade.adapters.local import GoalFile
            platform = LocalPlatform(store, GoalFile(args.goal))
        proc = Procedure(store, platform, min_delegates=args.min_delegates, bootstrap=args.kafka,
                         pool=pool, by=f"vigil upgrade ({os.environ.get('USER', 'operator')})")
        try:
            if args.action == "status":
                return await _status(proc)
            if args.action == "start":
                await proc.start(args.version, args.timeout)
                print(f"{args.version} is up beside the primary; `vigil upgrade switch` next")
            elif args.action == "switch":
                target = args.version
                if not target:
                    world = await proc.observe()
                    others = [v for v in world.versions if v != world.primary.version]
                    if not others:
                        raise UpgradeError("no other version runs; `vigil upgrade start` first")
                    target = max(others, key=version_number)
                await proc.switch(target, args.reason)
            elif args.action == "rollback":
                await proc.rollback(args.reason)
            elif args.action == "finish":
                await proc.finish(args.wait)
            elif args.action == "run":
                await proc.run(args.version, args.timeout)
        except UpgradeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


async def _status(proc: object) -> int:
    world = await proc.observe()  # type: ignore[attr-defined]
    p = world.primary
    print(f"primary {p.version} (generation {p.generation}; previous "
          f"{p.previous_version or '-'}; {p.changed_at:%Y-%m-%d %H:%M:%S} by {p.changed_by}: "
          f"{p.reason})")
    rows = [("VERSION", "ROLE", "HEALTH", "DELEGATES", "EXECUTIONS", "PROBLEMS")]
    for name, v in sorted(world.versions.items()):
        role = ("primary" if name == p.version else
                "previous" if name == p.previous_version else "")
        rows.append((name, role, "healthy" if v.healthy(world.min_delegates) else "unhealthy",
                     str(v.delegates_connected), str(v.executions_running),
                     "; ".join(v.problems)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0
