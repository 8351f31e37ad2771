"""Local stand-ins for the real parts: embedded broker, PostgreSQL resolution, a supervisor."""

from vigil_common.kafka import ensure_topics
from vigil_local.broker import (
    BrokerStartError,
    EmbeddedBroker,
    resolve_bootstrap,
    tansu_binary,
)
from vigil_local.database import (
    EmbeddedPostgres,
    ResolvedDatabase,
    create_database_if_missing,
    drop_database,
    resolve_database,
)
from vigil_local.ports import free_port
from vigil_local.supervisor import ManagedProcess, Supervisor

__all__ = [
    "BrokerStartError",
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "ManagedProcess",
    "ResolvedDatabase",
    "Supervisor",
    "create_database_if_missing",
    "drop_database",
    "ensure_topics",
    "free_port",
    "resolve_bootstrap",
    "resolve_database",
    "tansu_binary",
]
