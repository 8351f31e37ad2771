"""task-dispatch I/O: the PostgreSQL task queue and delegate registry."""
