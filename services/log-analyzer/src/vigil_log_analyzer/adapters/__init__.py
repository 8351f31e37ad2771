"""log-analyzer adapters: PostgreSQL storage and the feedback gRPC API."""
