-- depends: 0009.orchestrator_api
-- The W3C trace an execution was started in (the API caller's, the artifact event's, or a
-- new one), so work that no event causes — durable timers, deadlines, approvals' timeouts —
-- continues the execution's trace instead of starting a new one. Empty for older executions.
ALTER TABLE executions ADD COLUMN traceparent text NOT NULL DEFAULT '';
