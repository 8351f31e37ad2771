"""Where the upgrade procedure meets the world: PostgreSQL, local processes, Kubernetes."""
