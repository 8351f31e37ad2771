-- depends: 0008.delegates
-- Issue 3: live delegate-gateway instances, so a crashed instance's sessions are closed.
-- Each instance refreshes its row every GATEWAY_HEARTBEAT_SECONDS; any instance of the same
-- Vigil version that finds a row older than GATEWAY_DEAD_AFTER_SECONDS closes that instance's
-- sessions (DelegateDisconnected through the outbox) and deletes the row. An instance
-- starting closes the sessions left under its own id by its previous life.
CREATE TABLE gateway_instances (
    gateway_id   text        PRIMARY KEY,
    version      text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX delegate_sessions_gateway ON delegate_sessions (gateway_id) WHERE connected;
