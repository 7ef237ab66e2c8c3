-- Traffic shaping shared by every relay on the database.
--
-- destination_slots: one row per allowed connection to a provider on a
-- stream. A relay opening a connection takes a free row (holder = its node
-- id, lease_until renewed by its heartbeat) and frees it when the
-- connection closes, so max_connections holds across all relays. A dead
-- relay's slots lapse with their lease, or at once when it restarts.
CREATE TABLE destination_slots (
    stream       TEXT NOT NULL,
    provider     TEXT NOT NULL,
    slot         BIGINT NOT NULL,
    holder       TEXT,
    lease_until  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, provider, slot)
);
CREATE INDEX destination_slots_holder ON destination_slots (holder);

-- A provider's suspension or throttle on a stream, set by a reply rule or
-- by hand; it recovers stepwise after throttled_until (docs/operations.md).
CREATE TABLE destination_state (
    stream            TEXT NOT NULL,
    provider          TEXT NOT NULL,
    suspended_until   BIGINT,
    throttle_rate     REAL,
    throttled_until   BIGINT,
    recover_every_ms  BIGINT NOT NULL,
    reason            TEXT NOT NULL,
    set_by            TEXT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (stream, provider)
);
