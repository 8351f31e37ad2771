-- depends: 0002.orchestrator
-- Issue 7: labels for filters and statistics, API keys, the audit log, artifact triggers.
ALTER TABLE pipelines
    ADD COLUMN application      text   NOT NULL DEFAULT '',
    ADD COLUMN service          text   NOT NULL DEFAULT '',
    ADD COLUMN environment      text   NOT NULL DEFAULT '',
    ADD COLUMN trigger_services text[] NOT NULL DEFAULT '{}';  -- artifact triggers

ALTER TABLE executions
    ADD COLUMN application text NOT NULL DEFAULT '',
    ADD COLUMN service     text NOT NULL DEFAULT '',
    ADD COLUMN environment text NOT NULL DEFAULT '';
CREATE INDEX executions_filters ON executions (account_id, environment, service, created_at DESC);

CREATE TABLE api_keys (
    key_hash   text PRIMARY KEY,        -- sha256 hex; the key itself is never stored
    account_id text        NOT NULL,
    name       text        NOT NULL,    -- who, in the audit log
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    account_id   text        NOT NULL,
    actor        text        NOT NULL,
    action       text        NOT NULL,  -- abort, pause, resume, approve, reject, intervene:<a>, rollback
    execution_id text        NOT NULL,
    step         text        NOT NULL DEFAULT '',
    reason       text        NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_account ON audit_log (account_id, id DESC);
