-- The engine's tables: definitions, instances, their pending events and timers, history.
CREATE TABLE definitions (
    hash        TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    file        TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX definitions_workflow ON definitions (workflow, created_at);

CREATE TABLE instances (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    def_hash         TEXT NOT NULL REFERENCES definitions (hash),
    status           TEXT NOT NULL,
    outcome          TEXT,
    state            TEXT NOT NULL,
    version          BIGINT NOT NULL,
    parent_id        TEXT,
    parent_link      TEXT,
    parent_seq       BIGINT,
    idempotency_key  TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    ended_at         BIGINT,
    wake_at          BIGINT,
    lease_owner      TEXT,
    lease_until      BIGINT
);
CREATE UNIQUE INDEX instances_idempotency ON instances (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Only instances with something due are in this index: finished ones stay out of the hot path.
CREATE INDEX instances_wake ON instances (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX instances_workflow_status ON instances (workflow, status, created_at);
CREATE INDEX instances_status ON instances (status, created_at);
CREATE INDEX instances_parent ON instances (parent_id) WHERE parent_id IS NOT NULL;

-- Timers (kind 'timer', due in the future) and inbound events (kind 'event', due now).
CREATE TABLE events (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    due_at       BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    timer_id     BIGINT,
    payload      TEXT NOT NULL,
    actor        TEXT NOT NULL
);
CREATE INDEX events_instance ON events (instance_id, due_at);
CREATE UNIQUE INDEX events_timer ON events (instance_id, timer_id) WHERE timer_id IS NOT NULL;

CREATE TABLE subscriptions (
    name         TEXT NOT NULL,
    key          TEXT NOT NULL,
    instance_id  TEXT NOT NULL,
    PRIMARY KEY (name, key, instance_id)
);
CREATE INDEX subscriptions_instance ON subscriptions (instance_id);

-- Append-only: rows are inserted, never updated or deleted.
CREATE TABLE history (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    step         TEXT,
    detail       TEXT NOT NULL
);
CREATE INDEX history_instance ON history (instance_id, id);
