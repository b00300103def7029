-- hybridgrid store, PostgreSQL dialect. Times are microseconds since the Unix epoch (as in the SQLite
-- schema, so both backends round-trip the same values); JSON documents are JSONB.
CREATE TABLE workflows (
    id            TEXT   PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    definition    JSONB  NOT NULL,
    version       BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);

CREATE TABLE runs (
    -- insertion order: "newest first" sorts on it
    seq             BIGSERIAL PRIMARY KEY,
    id              TEXT   NOT NULL UNIQUE,
    workflow_id     TEXT   REFERENCES workflows (id),
    kind            TEXT   NOT NULL,
    status          TEXT   NOT NULL
        CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    input           JSONB  NOT NULL,
    output          JSONB,
    error           TEXT,
    idempotency_key TEXT   UNIQUE,
    created_at_us   BIGINT NOT NULL,
    updated_at_us   BIGINT NOT NULL
);
CREATE INDEX runs_by_status ON runs (status, seq);

CREATE TABLE steps (
    run_id        TEXT   NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name          TEXT   NOT NULL,
    status        TEXT   NOT NULL
        CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    attempt       BIGINT NOT NULL DEFAULT 0,
    input         JSONB  NOT NULL,
    output        JSONB,
    error         TEXT,
    updated_at_us BIGINT NOT NULL,
    PRIMARY KEY (run_id, name)
);
