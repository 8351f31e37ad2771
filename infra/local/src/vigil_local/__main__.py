"""``python -m vigil_local run|demo``: the whole system locally (``make run`` / ``make demo``).

run   starts everything, runs the demo pipeline, narrates it, then keeps running until Ctrl-C.
demo  the same, but exits when the demo is done: 0 if the expected outcome happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from vigil_local.demo import run_demo
from vigil_local.stack import Stack, StackConfig
from vigil_upgrade.control import beside_stack

ROOT = Path(__file__).resolve().parents[4]


async def _main(mode: str, verbose: bool) -> int:
    config = StackConfig(state_dir=ROOT / "var",
                         api_port=int(os.environ.get("API_PORT", "0") or 0),
                         gateway_port=int(os.environ.get("GATEWAY_PORT", "0") or 0),
                         echo_service_logs=verbose)
    async with Stack(config) as stack, contextlib.AsyncExitStack() as upgrades:
        print("\n== demo pipeline: v1 on two nodes, v2 canary on a third, verify, roll back ==",
              flush=True)
        outcome = await run_demo(stack)
        print("\n== summary ==")
        for check in outcome.checks:
            print(f"  [{'ok' if check.ok else 'FAILED'}] {check.what}")
        print(f"  demo {'passed' if outcome.ok else 'did NOT pass'}: execution "
              f"{outcome.execution.execution_id}", flush=True)
        if mode == "demo":
            return 0 if outcome.ok else 1
        # Issue 4: the router (API of the primary version) and the goal-file controller that
        # starts and stops further versions for `vigil upgrade` (docs/upgrades.md).
        control = await upgrades.enter_async_context(beside_stack(
            stack, router_port=int(os.environ.get("ROUTER_PORT", "0") or 0)))
        print(f"\nVigil is running: API {control.router_address} (primary version; "
              f"{stack.config.version} directly: {stack.api_address}), delegate gateway "
              f"{stack.gateway_address}, logs in {stack.logs_dir}. Ctrl-C stops everything.\n"
              f"Try the CLI in another terminal:\n"
              f"  export VIGIL_API={control.router_address} VIGIL_API_KEY={stack.api_key}\n"
              f"  .venv/bin/vigil list\n"
              f"  .venv/bin/vigil get execution {outcome.execution.execution_id}\n"
              f"  .venv/bin/vigil verify export {outcome.execution.execution_id} -o v.json"
              f" && .venv/bin/vigil verify replay v.json\n"
              f"  .venv/bin/vigil delegates list --gateway {stack.gateway_address}\n"
              f"Upgrade Vigil itself without downtime (versions side by side):\n"
              f"  export DATABASE_URL={stack.database.url} "
              f"VIGIL_UPGRADE_GOAL={control.goal.path}\n"
              f"  .venv/bin/vigil upgrade run v2 && .venv/bin/vigil upgrade status\n"
              f"  .venv/bin/vigil upgrade rollback",
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        assert stack.supervisor is not None
        crashed = asyncio.ensure_future(stack.supervisor.wait_any_exit())
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([crashed, waiter], return_when=asyncio.FIRST_COMPLETED)
        if crashed.done() and crashed.result() is not None:
            proc = crashed.result()
            print(f"{proc.name} exited with code {proc.returncode}; stopping (see "
                  f"{proc.log_path})", file=sys.stderr)
            waiter.cancel()
            return 1
        crashed.cancel()
        print("\nstopping everything...", flush=True)
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m vigil_local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["run", "demo"])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="copy every service's log lines to stdout")
    args = parser.parse_args()
    return asyncio.run(_main(args.mode, args.verbose))


if __name__ == "__main__":
    sys.exit(main())
