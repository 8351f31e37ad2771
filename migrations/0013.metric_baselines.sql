-- depends: 0007.metric_analyzer
-- Issue 5, load tests in live runs: the metric analyzer compares a load test's series with the
-- service's baseline, the test series of its last passed load-test verification (or of its
-- first load test, when it did not fail). One row per account and service, replaced by each
-- passed load test.
CREATE TABLE metric_baselines (
    account_id      text        NOT NULL,
    service         text        NOT NULL,
    verification_id text        NOT NULL,  -- the load test the baseline comes from
    payload         bytea       NOT NULL,  -- vigil.events.v1.MetricsCollected, series in CONTROL
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, service)
);
