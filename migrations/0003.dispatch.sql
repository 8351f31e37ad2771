-- depends: 0001.common
CREATE TABLE delegates (
    delegate_id   text PRIMARY KEY,
    account_id    text        NOT NULL,
    name          text        NOT NULL,
    version       text        NOT NULL,  -- Vigil version the delegate speaks
    capabilities  text[]      NOT NULL,
    gateway_id    text        NOT NULL,
    session       bigint      NOT NULL,  -- latest session seen; older disconnects are ignored
    connected     boolean     NOT NULL,
    running_tasks integer     NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delegates_pick ON delegates (account_id, version) WHERE connected;

CREATE TABLE tasks (
    task_id         text        NOT NULL,
    attempt         integer     NOT NULL,
    account_id      text        NOT NULL,
    execution_id    text        NOT NULL,
    capability      text        NOT NULL,
    vigil_version   text        NOT NULL,
    spec            bytea       NOT NULL,  -- vigil.delegate.v1.TaskSpec
    timeout_seconds double precision NOT NULL,
    status          text        NOT NULL,  -- QUEUED | ASSIGNED | SUCCEEDED | FAILED
    delegate_id     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    assigned_at     timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (task_id, attempt)
);
CREATE INDEX tasks_queued ON tasks (account_id, created_at) WHERE status = 'QUEUED';
