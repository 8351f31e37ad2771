"""`vigil` entry point: each command group lives in its own module with a `register`.

    vigil pipeline lint|plan FILE    validate / show the resolved pipeline, no server needed
    vigil pipeline apply FILE        create or replace a pipeline (errors name the bad field)
    vigil run PIPELINE [-i k=v ...]  start an execution; --wait follows it to the end
    vigil get execution ID [--watch] stages, phases, steps with status and reasons
    vigil wait ID                    exit 0 succeeded, 1 failed, 3 timeout, 4 aborted,
                                     5 rolled back (2: usage or API error)
    vigil approve|reject|abort|pause|resume|intervene|rollback ID --reason WHY
    vigil list | audit | stats       executions, the audit log, deployment statistics
    vigil token|apikey create ...    delegate tokens and API keys (stored hashed)

Connection: --api / VIGIL_API (default 127.0.0.1:50051), --api-key / VIGIL_API_KEY.
    vigil logs cluster FILE          print LineId,ClusterId for a log (--format raw|loghub-csv)
    vigil delegates list --account A     delegates and the gateway instance each is on
    vigil delegates probe --account A --capability C --tcp HOST:PORT
                                     ask every matching connected delegate, aggregate answers
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, each with `register(subparsers)`; a module adds its own sub-commands.
COMMAND_MODULES = [
    "vigil_cli.pipelines", "vigil_cli.executions", "vigil_cli.tokens", "vigil_cli.delegates",
    "vigil_cli.logs", "vigil_cli.verify", "vigil_cli.upgrade",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
