-- depends: 0005.analyzers
-- Log analyzer (issue 6): stable cluster ids per account and service, and user feedback.

-- Every cluster ever seen for a service. baseline = seen on the control side (the old
-- version), which is what "known" means for the next verification.
CREATE TABLE log_clusters (
    account_id text        NOT NULL,
    service    text        NOT NULL,
    cluster_id text        NOT NULL,  -- stable 12-hex-digit id
    template   text        NOT NULL,  -- tokens joined by spaces, variables as <*>
    level      text        NOT NULL,  -- ERROR | WARN | INFO (most severe seen)
    example    text        NOT NULL,  -- first line of one record
    baseline   boolean     NOT NULL DEFAULT false,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, service, cluster_id)
);

-- The distinct token signatures of a service and their cluster: what the clusterer is
-- seeded with, so ids stay stable. Bounded by the clusterer (MAX_SIGNATURES per service).
CREATE TABLE log_signatures (
    account_id text        NOT NULL,
    service    text        NOT NULL,
    signature  text[]      NOT NULL,
    cluster_id text        NOT NULL,
    count      bigint      NOT NULL,
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, service, signature)
);

-- Clusters merged into an older one keep resolving to it (feedback on either applies).
CREATE TABLE log_cluster_aliases (
    account_id text NOT NULL,
    service    text NOT NULL,
    alias_id   text NOT NULL,
    cluster_id text NOT NULL,
    PRIMARY KEY (account_id, service, alias_id)
);

-- Feedback per cluster of a service: HIGH | MEDIUM | NO_RISK | IGNORE.
CREATE TABLE log_feedback (
    account_id text        NOT NULL,
    service    text        NOT NULL,
    cluster_id text        NOT NULL,
    risk       text        NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    template   text        NOT NULL DEFAULT '',  -- for IGNORE: suppress similar clusters
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, service, cluster_id)
);
