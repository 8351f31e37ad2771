"""The orchestrator's I/O: PostgreSQL store, gRPC API."""
