-- A relay that found every connection slot of a provider taken says so
-- here until wanted_until (a few seconds, renewed while it keeps waiting).
-- The relays holding that provider's slots read it each second and close
-- the idle connections and those above their fair share, so the slots move
-- to where the mail is instead of sitting idle on another relay.
CREATE TABLE destination_demand (
    stream        TEXT NOT NULL,
    provider      TEXT NOT NULL,
    node          TEXT NOT NULL,
    wanted_until  BIGINT NOT NULL,
    PRIMARY KEY (stream, provider, node)
);
