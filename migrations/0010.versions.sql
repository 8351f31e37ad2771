-- depends: 0001.common
-- Issue 4: Vigil's own versions side by side and the primary one (docs/upgrades.md).

-- The primary version: takes new API calls and new executions. One row. Changed only by the
-- upgrade procedure (vigil_upgrade.adapters.postgres), which also queues PrimaryVersionChanged
-- in the outbox and NOTIFYs vigil_primary in the same transaction.
CREATE TABLE vigil_primary (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    version          text        NOT NULL,
    previous_version text        NOT NULL DEFAULT '',  -- where a rollback goes
    generation       bigint      NOT NULL,             -- +1 per change
    changed_by       text        NOT NULL DEFAULT '',
    reason           text        NOT NULL DEFAULT '',
    changed_at       timestamptz NOT NULL DEFAULT now()
);

-- The versions that are running (or being started / torn down) and where their endpoints are.
-- Locally the process-set reconciler registers addresses here; the router reads them.
CREATE TABLE vigil_versions (
    version          text        PRIMARY KEY,
    state            text        NOT NULL,             -- STARTING, READY, DRAINING, STOPPED
    api_address      text        NOT NULL DEFAULT '',  -- orchestrator API host:port
    gateway_address  text        NOT NULL DEFAULT '',  -- delegate-gateway host:port
    updated_at       timestamptz NOT NULL DEFAULT now()
);
