"""log-analyzer: clusters a verification's logs into templates and publishes the verdict."""
