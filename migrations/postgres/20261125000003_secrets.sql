-- Secrets every relay process must share, made by the first process that
-- needs one (e.g. the HMAC key that signs unsubscribe links).
CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
