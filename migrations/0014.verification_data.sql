-- depends: 0004.gateway
-- Issue 5, `vigil verify export`: the input data of every verification, kept after its verdict
-- so it can be exported in the replay format and re-run (`vigil verify replay`). The gateway
-- stores each health-data report here in the transaction that stores it in task_reports (so
-- once per part, however often the delegate resends it); the orchestrator's
-- ExportVerification reads it; the gateway's keep-alive loop deletes rows older than
-- VERIFICATION_DATA_RETENTION_DAYS in small batches.
CREATE TABLE verification_data (
    verification_id text        NOT NULL,  -- the verify step attempt's task id
    part            text        NOT NULL,  -- metrics | metrics/<first interval> | logs
    account_id      text        NOT NULL,
    execution_id    text        NOT NULL,
    task_id         text        NOT NULL,
    attempt         integer     NOT NULL,
    message_type    text        NOT NULL,  -- vigil.events.v1.MetricsCollected | LogsCollected
    payload         bytea       NOT NULL,  -- the serialized message, as published
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (verification_id, part)
);
CREATE INDEX verification_data_by_execution ON verification_data (account_id, execution_id);
CREATE INDEX verification_data_by_age ON verification_data (received_at);
