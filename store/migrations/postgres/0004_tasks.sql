-- Human tasks: one row per task an instance creates, written in the same transaction as
-- the transition that creates, reassigns or closes it. Completing or rejecting a task
-- updates its row and queues the event for the instance in one transaction.
CREATE TABLE tasks (
    id            TEXT PRIMARY KEY,
    instance_id   TEXT NOT NULL,
    task_no       BIGINT NOT NULL,
    token         BIGINT NOT NULL,
    step          TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    title         TEXT,
    role          TEXT,
    assignee      TEXT,
    claimed_by    TEXT,
    status        TEXT NOT NULL,
    priority      BIGINT NOT NULL,
    due_at        BIGINT,
    follow_up_at  BIGINT,
    provisional   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    closed_at     BIGINT,
    closed_by     TEXT,
    result        TEXT
);
CREATE UNIQUE INDEX tasks_instance_no ON tasks (instance_id, task_no);
CREATE INDEX tasks_open_role ON tasks (role, priority, created_at) WHERE status = 'open';
CREATE INDEX tasks_open_assignee ON tasks (assignee) WHERE status = 'open';
CREATE INDEX tasks_open_claimed ON tasks (claimed_by) WHERE status = 'open';
CREATE INDEX tasks_open_due ON tasks (due_at) WHERE status = 'open';
CREATE INDEX tasks_status ON tasks (status, priority, created_at);
