"""metric-analyzer: judges a verification's metrics and publishes the verdict."""
