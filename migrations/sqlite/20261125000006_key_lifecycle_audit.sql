-- Key lifecycle: an optional expiry (also how `keys rotate` ends the old
-- key's grace period) and when the key was last used (refreshed at most
-- every few seconds per process).
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;

-- Administrative actions, who did them and when: keys created, rotated and
-- revoked, suppressions added and removed by hand, configuration reloads.
-- Only ever added to.
CREATE TABLE audit_log (
    id      TEXT PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
