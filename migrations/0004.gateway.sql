-- depends: 0001.common
CREATE TABLE delegate_tokens (
    account_id  text        NOT NULL,
    token_hash  text        NOT NULL,  -- sha256 hex of the token; the token itself is never stored
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (account_id, token_hash)
);

CREATE TABLE delegate_sessions (
    delegate_id  text PRIMARY KEY,
    account_id   text        NOT NULL,
    name         text        NOT NULL,
    session      bigint      NOT NULL,
    gateway_id   text        NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now()
);

-- Reports (results, health data) received from delegates, by idempotency key.
CREATE TABLE task_reports (
    task_id     text        NOT NULL,
    attempt     integer     NOT NULL,
    kind        text        NOT NULL,  -- result | metrics | logs
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, attempt, kind)
);
