-- depends: 0005.analyzers
-- Partial MetricsCollected batches of verifications still in their window (issue 5, early
-- decision): the metric analyzer re-judges the accumulated minutes at each batch and may fail
-- early. Rows are deleted once the verification has its metrics verdict.
CREATE TABLE metric_batches (
    verification_id text        NOT NULL,
    first_interval  integer     NOT NULL,  -- index of the batch's first point in the window
    intervals       integer     NOT NULL,  -- points per series in this batch
    payload         bytea       NOT NULL,  -- the serialized vigil.events.v1.MetricsCollected
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (verification_id, first_interval)
);
