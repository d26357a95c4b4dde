-- The mail outbox: rendered messages queued in the same transaction as the step that
-- sends them, delivered by sender workers that claim rows with leases.
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY,
    instance_id      TEXT,
    step             TEXT,
    message_id       TEXT NOT NULL,
    sender           TEXT NOT NULL,
    recipients       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    text_body        TEXT NOT NULL,
    html_body        TEXT,
    locale           TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    reply            TEXT,
    lease_owner      TEXT,
    lease_until      BIGINT,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'queued';
CREATE INDEX outbox_status ON outbox (status, created_at);
CREATE INDEX outbox_instance ON outbox (instance_id);
