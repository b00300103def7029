-- Durable DAG runs (the workflow orchestrator): deadlines, approvals parked on steps, step claims
-- with leases, records (agent registry) and an event outbox.
ALTER TABLE runs ADD COLUMN deadline_us BIGINT;
ALTER TABLE runs ADD COLUMN waiting_approvals BIGINT NOT NULL DEFAULT 0;
-- steps not done yet; the run succeeds when it reaches 0
ALTER TABLE runs ADD COLUMN steps_open BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_by_workflow ON runs (workflow_id, seq);
CREATE INDEX runs_by_deadline ON runs (status, deadline_us);

ALTER TABLE steps ADD COLUMN phase TEXT;
ALTER TABLE steps ADD COLUMN detail JSONB;
ALTER TABLE steps ADD COLUMN approval JSONB;
ALTER TABLE steps ADD COLUMN lease_owner TEXT;
ALTER TABLE steps ADD COLUMN lease_until_us BIGINT;
ALTER TABLE steps ADD COLUMN waiting_on BIGINT NOT NULL DEFAULT 0;
ALTER TABLE steps ADD COLUMN not_before_us BIGINT;
CREATE INDEX steps_claimable ON steps (status, waiting_on, not_before_us);
CREATE INDEX steps_by_lease ON steps (status, lease_until_us);
CREATE INDEX steps_with_approval ON steps (updated_at_us) WHERE approval IS NOT NULL;

CREATE TABLE records (
    kind          TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    doc           JSONB   NOT NULL,
    version       BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, name)
);

CREATE TABLE outbox (
    seq            BIGSERIAL PRIMARY KEY,
    subject        TEXT    NOT NULL,
    payload        BYTEA   NOT NULL,
    claimed_by     TEXT,
    claim_until_us BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_claimable ON outbox (claim_until_us, seq);
