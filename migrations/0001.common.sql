-- Shared by every service: the transactional outbox and the idempotent-consumer inbox.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    producer      text        NOT NULL,  -- service that wrote the row; its relay publishes it
    topic         text        NOT NULL,
    key           bytea,
    header_names  text[]      NOT NULL,  -- CloudEvents headers, built by vigil_common.envelope
    header_values text[]      NOT NULL,
    value         bytea       NOT NULL,  -- serialized protobuf payload
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_producer_id ON outbox (producer, id);

CREATE TABLE processed_events (
    consumer     text        NOT NULL,  -- consumer name, e.g. "v1.orchestrator"
    event_id     text        NOT NULL,  -- ce_id of the handled event
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
