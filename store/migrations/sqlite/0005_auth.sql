-- Authentication and audit: API tokens (only a hash of each secret), the append-only
-- security audit log, and the hash chains over it and over each instance's history.
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    name          TEXT,
    secret_hash   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT,
    last_used_at  BIGINT
);
CREATE INDEX tokens_user ON tokens (user_id, created_at);

-- Append-only: `seq` is the position in the chain, `hash` covers the previous hash and
-- the row's content.
CREATE TABLE audit (
    seq          BIGINT PRIMARY KEY,
    at           BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    instance_id  TEXT,
    detail       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX audit_instance ON audit (instance_id, seq) WHERE instance_id IS NOT NULL;

-- The last position and hash of each chain (`audit`, `history:INSTANCE`), written in the
-- transaction that appends, so deleting the tail of a chain is detected.
CREATE TABLE chain_heads (
    chain  TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL,
    hash   TEXT NOT NULL
);
INSERT INTO chain_heads (chain, seq, hash) VALUES ('audit', 0, '');

ALTER TABLE history ADD COLUMN seq BIGINT;
ALTER TABLE history ADD COLUMN prev_hash TEXT;
ALTER TABLE history ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX history_chain ON history (instance_id, seq) WHERE seq IS NOT NULL;
