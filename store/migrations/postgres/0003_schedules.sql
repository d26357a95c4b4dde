-- Cron schedules: the state of each schedule and one row per fire time decided.
--
-- `cursor` is the instant after which fire times are still to be decided: the last
-- fire decided, or the moment the schedule was first seen, changed or resumed (so
-- nothing before it is back-filled). `fingerprint` is what decides the fire times
-- (cron, time zone, working-day filters); when it changes the cursor restarts at now.
CREATE TABLE schedules (
    workflow       TEXT NOT NULL,
    schedule       TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    paused         BIGINT NOT NULL DEFAULT 0,
    cursor         BIGINT NOT NULL,
    last_fire      BIGINT,
    last_instance  TEXT,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (workflow, schedule)
);

-- Exactly one decision per fire time, across restarts and daemons: the primary key is
-- the fire's identity, and the row is written in the transaction that starts its
-- instance. `outcome` is `started`, `skipped` (overlap) or `failed` (the start was
-- refused, e.g. the input does not match the workflow's schema).
CREATE TABLE schedule_fires (
    workflow     TEXT NOT NULL,
    schedule     TEXT NOT NULL,
    fire_time    BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    instance_id  TEXT,
    reason       TEXT,
    decided_at   BIGINT NOT NULL,
    PRIMARY KEY (workflow, schedule, fire_time)
);
CREATE INDEX schedule_fires_instance ON schedule_fires (instance_id) WHERE instance_id IS NOT NULL;
