-- mailroom's initial schema. Times are Unix milliseconds (BIGINT) so the same
-- statements serve SQLite and PostgreSQL; the PostgreSQL twin of this file
-- differs only in BYTEA for BLOB.

-- API keys: only a SHA-256 of the secret is kept. `id` is the public prefix
-- of the key, safe to log.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    streams      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

-- One row per accepted message: the final signed bytes, sent unchanged on
-- every attempt.
CREATE TABLE messages (
    id                 TEXT PRIMARY KEY,
    stream             TEXT NOT NULL,
    api_key_id         TEXT NOT NULL,
    sender             TEXT NOT NULL,
    subject            TEXT NOT NULL,
    message_id_header  TEXT NOT NULL,
    dkim               TEXT,
    tags               TEXT NOT NULL,
    metadata           TEXT NOT NULL,
    raw                BLOB NOT NULL,
    created_at         BIGINT NOT NULL
);

-- The queue: one row per envelope recipient. `next_attempt_at` is when the row
-- is next due: the accept time for fresh mail, the retry time for deferred
-- mail, and the lease expiry for mail in flight, so a worker that died gives
-- its rows back simply by the clock passing.
CREATE TABLE recipients (
    message_id       TEXT NOT NULL REFERENCES messages (id),
    idx              BIGINT NOT NULL,
    stream           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    address          TEXT NOT NULL,
    domain           TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    lease_token      TEXT,
    last_reply       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (message_id, idx)
);

-- Only rows still to be delivered are indexed, by stream and due time: a
-- claim reads the head of its own stream's index and never scans delivered
-- mail, the other stream, or retries that are not yet due.
CREATE INDEX recipients_due ON recipients (stream, next_attempt_at)
    WHERE state IN ('queued', 'deferred', 'inflight');

-- Every delivery attempt and the reply it got.
CREATE TABLE attempts (
    message_id   TEXT NOT NULL,
    idx          BIGINT NOT NULL,
    attempt      BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    smtp_code    BIGINT,
    reply        TEXT NOT NULL,
    host         TEXT,
    PRIMARY KEY (message_id, idx, attempt)
);

-- Idempotency keys, per API key: the first answer is replayed to retries.
CREATE TABLE idempotency (
    api_key_id    TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_created ON idempotency (created_at);
