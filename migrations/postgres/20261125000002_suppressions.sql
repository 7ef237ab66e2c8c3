-- Addresses and domains mail must not go to. `scope` is 'global' (every
-- stream: hard bounces, complaints) or one stream ('marketing' for an
-- unsubscribe); `kind` is 'address' (lower-cased) or 'domain'.
CREATE TABLE suppressions (
    scope       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    value       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    source      TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    PRIMARY KEY (scope, kind, value)
);

-- The relay checks recipients by value; the in-memory filter in front of
-- this table catches up by creation time.
CREATE INDEX suppressions_value ON suppressions (value);
CREATE INDEX suppressions_created ON suppressions (created_at);
