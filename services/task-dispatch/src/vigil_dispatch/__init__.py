"""task-dispatch: queues tasks per account and picks the delegate that runs each."""
