-- Durable DAG runs (the workflow orchestrator): deadlines, approvals parked on steps, step claims
-- with leases, records (agent registry) and an event outbox.
ALTER TABLE runs ADD COLUMN deadline_us INTEGER;
ALTER TABLE runs ADD COLUMN waiting_approvals INTEGER NOT NULL DEFAULT 0;
-- steps not done yet; the run succeeds when it reaches 0
ALTER TABLE runs ADD COLUMN steps_open INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_by_workflow ON runs (workflow_id, seq);
CREATE INDEX runs_by_deadline ON runs (status, deadline_us);

ALTER TABLE steps ADD COLUMN phase TEXT;
ALTER TABLE steps ADD COLUMN detail TEXT;
ALTER TABLE steps ADD COLUMN approval TEXT;
ALTER TABLE steps ADD COLUMN lease_owner TEXT;
ALTER TABLE steps ADD COLUMN lease_until_us INTEGER;
ALTER TABLE steps ADD COLUMN waiting_on INTEGER NOT NULL DEFAULT 0;
ALTER TABLE steps ADD COLUMN not_before_us INTEGER;
CREATE INDEX steps_claimable ON steps (status, waiting_on, not_before_us);
CREATE INDEX steps_by_lease ON steps (status, lease_until_us);
CREATE INDEX steps_with_approval ON steps (updated_at_us) WHERE approval IS NOT NULL;

CREATE TABLE records (
    kind          TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    doc           TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name)
);

CREATE TABLE outbox (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    subject        TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    claimed_by     TEXT,
    claim_until_us INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_claimable ON outbox (claim_until_us, seq);
