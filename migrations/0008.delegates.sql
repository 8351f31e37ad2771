-- depends: 0003.dispatch 0004.gateway
-- Issue 3: delegates at scale (task lifecycle and timeouts, selectors, load limits, who is
-- connected where, broadcast tasks). See docs/delegates-operations.md.

-- Gateway side: one row per delegate, queryable by `vigil delegates list`.
ALTER TABLE delegate_sessions
    ADD COLUMN connected       boolean     NOT NULL DEFAULT true,
    ADD COLUMN version         text        NOT NULL DEFAULT '',
    ADD COLUMN capabilities    text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN selectors       text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN disconnected_at timestamptz;           -- set when the session's stream closed
CREATE INDEX delegate_sessions_account ON delegate_sessions (account_id, name);

-- task-dispatch's registry.
ALTER TABLE delegates
    ADD COLUMN selectors       text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN max_tasks       integer     NOT NULL DEFAULT 0,  -- 0 = no limit
    ADD COLUMN disconnected_at timestamptz;  -- tasks re-queued DISPATCH_REQUEUE_AFTER_SECONDS later

-- status: QUEUED | ASSIGNED | RUNNING | SUCCEEDED | FAILED | EXPIRED
ALTER TABLE tasks
    ADD COLUMN selectors        text[]           NOT NULL DEFAULT '{}',
    ADD COLUMN validity_seconds double precision NOT NULL DEFAULT 300,
    ADD COLUMN valid_until      timestamptz,  -- QUEUED past this: EXPIRED, TaskFailed NOT_ASSIGNED
    ADD COLUMN started_at       timestamptz,  -- the delegate's TaskStarted
    ADD COLUMN requeues         integer          NOT NULL DEFAULT 0,  -- delegate vanished
    ADD COLUMN failure          text;         -- why dispatch failed it (EXPIRED)
CREATE INDEX tasks_expiring ON tasks (valid_until) WHERE status = 'QUEUED';
CREATE INDEX tasks_in_flight ON tasks (delegate_id) WHERE status IN ('ASSIGNED', 'RUNNING');

-- Broadcast tasks: one row per request, one answer row per delegate asked.
CREATE TABLE broadcasts (
    broadcast_id  text PRIMARY KEY,
    account_id    text        NOT NULL,
    vigil_version text        NOT NULL,
    capability    text        NOT NULL,
    selectors     text[]      NOT NULL,
    deadline      timestamptz NOT NULL,  -- answers missing then are reported missing
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE INDEX broadcasts_open ON broadcasts (deadline) WHERE completed_at IS NULL;

CREATE TABLE broadcast_answers (
    broadcast_id text        NOT NULL REFERENCES broadcasts ON DELETE CASCADE,
    delegate_id  text        NOT NULL,
    name         text        NOT NULL,
    answered_at  timestamptz,           -- NULL: still waiting
    ok           boolean,
    detail       text        NOT NULL DEFAULT '',
    PRIMARY KEY (broadcast_id, delegate_id)
);
