"""``python -m vigil_common.migrate``: apply the schema migrations to DATABASE_URL."""

from __future__ import annotations

import os
import sys

from vigil_common import db
from vigil_common.config import DEFAULT_DATABASE_URL


def main() -> int:
    url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    applied = db.migrate(url)
    print(f"migrations applied: {', '.join(applied) or 'none (schema up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
