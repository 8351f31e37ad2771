"""The orchestrator: owns pipeline executions and advances them from events."""
