-- Intake: receipt codes (only an Argon2id hash of each secret, under its lookup id) and
-- reporters' identities, sealed with XChaCha20-Poly1305 under a key that is never in the
-- database. Kept apart from `instances`, so the case data never holds them.
CREATE TABLE receipts (
    lookup       TEXT PRIMARY KEY,
    instance_id  TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX receipts_instance ON receipts (instance_id);

CREATE TABLE identities (
    instance_id  TEXT PRIMARY KEY,
    nonce        TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    -- 1 when the reporter gave an email address and agreed to be written to (`to: reporter`).
    has_email    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
