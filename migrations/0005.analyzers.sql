-- depends: 0001.common
CREATE TABLE verdicts (
    verification_id text        NOT NULL,
    analysis        text        NOT NULL,  -- metrics | logs
    execution_id    text        NOT NULL,
    verdict         text        NOT NULL,  -- PASS | FAIL | INCONCLUSIVE | NO_DATA | ERROR
    reason          text        NOT NULL,
    analyzer        text        NOT NULL,  -- versioned analyzer name
    findings        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (verification_id, analysis)
);

-- Log templates per service, with stable ids, so "known" means seen before.
CREATE TABLE log_templates (
    service     text        NOT NULL,
    template_id text        NOT NULL,
    template    text        NOT NULL,
    level       text        NOT NULL,
    example     text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, template_id)
);
