-- The web console: staff credentials, server-side sessions, the whistleblower's
-- messages, and counters (case numbers assigned at intake).

-- One row per staff user who has a password. The user ids and roles stay in the users
-- file; this holds only what proves who someone is.
CREATE TABLE credentials (
    user_id         TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,          -- Argon2id, PHC string
    totp_secret     TEXT,                   -- base32; NULL until the second factor is enrolled
    totp_last_step  BIGINT,                 -- the last accepted TOTP step (a code works once)
    recovery        TEXT NOT NULL,          -- JSON array of SHA-256 hashes of unused recovery codes
    failures        BIGINT NOT NULL,        -- consecutive failed sign-ins
    last_failure    BIGINT,
    updated_at      BIGINT NOT NULL
);

-- A session is stored under the SHA-256 of its cookie; `stage` is `password` (the
-- password was right, the second factor is due), `enrol` (the second factor is being
-- set up) or `active`.
CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    stage         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL,
    revoked_at    BIGINT,
    enrol_secret  TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, created_at);

-- Messages between the whistleblower and the office, sealed like the identity (the
-- instance id is the associated data). `author` is a staff user id, NULL for the
-- whistleblower.
CREATE TABLE case_messages (
    id           TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    author       TEXT,
    nonce        TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX case_messages_instance ON case_messages (instance_id, created_at);

-- Named counters, incremented inside the transaction that uses the value, so two
-- daemons never hand out the same number.
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);

-- The case number of an instance's input, so the console finds a case by its number.
ALTER TABLE instances ADD COLUMN case_number TEXT;
CREATE INDEX instances_case_number ON instances (case_number) WHERE case_number IS NOT NULL;
