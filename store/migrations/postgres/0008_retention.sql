-- Retention of closed cases (保存期限): a case is its root instance with every instance
-- started from it. One row per case that has been warned of its expiry or put on hold;
-- the case's own rows are deleted at expiry, this row with them.
CREATE TABLE retention (
    instance_id  TEXT PRIMARY KEY,
    -- When the warning was queued, the expiry it announced (ms) and its outbox row: the
    -- case is deleted only once that message was delivered.
    warned_at     BIGINT,
    expires_at    BIGINT,
    warning_mail  TEXT,
    -- A hold keeps the case past its expiry until released (e.g. an appeal or a review).
    hold_reason  TEXT,
    held_by      TEXT,
    held_at      BIGINT
);

-- The sweep's scan: closed root instances in the order they ended.
CREATE INDEX instances_ended_roots ON instances (ended_at, id) WHERE parent_id IS NULL AND ended_at IS NOT NULL;
