"""delegate-gateway I/O: tokens and reports in PostgreSQL, the delegate gRPC stream."""
