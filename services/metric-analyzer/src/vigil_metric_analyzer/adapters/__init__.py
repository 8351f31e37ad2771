"""metric-analyzer adapters: PostgreSQL storage of partial metric batches."""
