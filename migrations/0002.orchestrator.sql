-- depends: 0001.common
CREATE TABLE pipelines (
    account_id text        NOT NULL,
    name       text        NOT NULL,
    revision   integer     NOT NULL,
    yaml       text        NOT NULL,  -- the definition as the user sent it
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, name)
);

CREATE TABLE executions (
    id              uuid PRIMARY KEY,
    account_id      text        NOT NULL,
    pipeline        text        NOT NULL,
    vigil_version   text        NOT NULL,  -- only orchestrators of this version advance it
    status          text        NOT NULL,  -- RUNNING | SUCCEEDED | FAILED
    idempotency_key text,
    state           jsonb       NOT NULL,  -- the domain Execution, resolved plan included
    next_deadline   timestamptz,           -- durable timer: earliest running-step deadline
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (account_id, idempotency_key)
);
CREATE INDEX executions_due ON executions (vigil_version, next_deadline) WHERE status = 'RUNNING';
CREATE INDEX executions_account ON executions (account_id, created_at DESC);
