"""Runs the demo service: ``python -m vigil_demo --help``."""

from vigil_demo.main import main

raise SystemExit(main())
