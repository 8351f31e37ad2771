"""Entry point of the demo service: one process is one node of one version.

    python -m vigil_demo --node node-1 --version v1 --port 0 --log-file /tmp/node-1.log

Prints one JSON line ``{"event": "listening", "port": N, ...}`` to stdout once it accepts
connections, then serves and generates its own traffic until SIGTERM or SIGINT.
"""

import argparse
import json
import logging
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from vigil_demo import logformat, profiles
from vigil_demo.server import DemoApp, DemoMetrics, DemoServer
from vigil_demo.traffic import TrafficGenerator

HOST = "127.0.0.1"
_log = logging.getLogger("demo.main")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(prog="vigil_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True, help="name of this node, e.g. node-1")
    parser.add_argument("--version", required=True, help="release to behave as: v1, v2, v3")
    parser.add_argument("--port", type=int, required=True, help="loopback port; 0 picks one")
    parser.add_argument("--log-file", type=Path, required=True, help="log file, appended to")
    parser.add_argument("--rps", type=float, default=20.0, help="self-traffic, requests/s")
    args = parser.parse_args(argv)
    if args.rps < 0:
        parser.error("--rps must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one node until SIGTERM or SIGINT; returns the process exit code."""
    args = parse_args(argv)
    handler = logformat.configure(args.log_file)
    threading.current_thread().name = "main"
    if not profiles.is_known(args.version):
        _log.warning(
            "Unknown version %s; behaving like %s", args.version, profiles.FALLBACK_VERSION
        )
    app = DemoApp(
        node=args.node, version=args.version,
        profile=profiles.profile_for(args.version),
        metrics=DemoMetrics(node=args.node, version=args.version),
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    with DemoServer(app, HOST, args.port) as server:
        serving = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http-acceptor"
        )
        serving.start()
        traffic = TrafficGenerator(f"http://{HOST}:{server.port}/", args.rps, stop)
        traffic.start()
        _log.info("Node %s version %s listening on port %d", args.node, args.version, server.port)
        print(json.dumps({
            "event": "listening", "port": server.port, "node": args.node, "version": args.version,
        }), flush=True)
        # A bounded wait keeps the main thread returning to the interpreter to run handlers.
        while not stop.wait(0.2):
            pass
        _log.info("Shutting down node %s", args.node)
        traffic.join(timeout=6)
        server.shutdown()
        serving.join()
    handler.close()
    return 0
