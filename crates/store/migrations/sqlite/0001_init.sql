-- hybridgrid store, SQLite dialect. Times are microseconds since the Unix epoch; JSON documents are TEXT.
CREATE TABLE workflows (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    definition    TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL
);

CREATE TABLE runs (
    -- insertion order: "newest first" sorts on it
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    workflow_id     TEXT    REFERENCES workflows (id),
    kind            TEXT    NOT NULL,
    status          TEXT    NOT NULL
        CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    input           TEXT    NOT NULL,
    output          TEXT,
    error           TEXT,
    idempotency_key TEXT    UNIQUE,
    created_at_us   INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL
);
CREATE INDEX runs_by_status ON runs (status, seq);

CREATE TABLE steps (
    run_id        TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    status        TEXT    NOT NULL
        CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
    attempt       INTEGER NOT NULL DEFAULT 0,
    input         TEXT    NOT NULL,
    output        TEXT,
    error         TEXT,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
);
