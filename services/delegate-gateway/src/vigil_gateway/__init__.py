"""delegate-gateway: terminates delegate streams, forwards tasks, publishes their results."""
