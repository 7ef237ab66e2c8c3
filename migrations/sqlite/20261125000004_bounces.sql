-- Every bounce the relay learned of (its own 5xx replies are in attempts;
-- these came in through the bounce webhook), per failed recipient.
CREATE TABLE bounces (
    id                   TEXT PRIMARY KEY,
    received_at          BIGINT NOT NULL,
    address              TEXT NOT NULL,
    class                TEXT NOT NULL,
    action               TEXT NOT NULL,
    status               TEXT,
    diagnostic           TEXT,
    original_message_id  TEXT,
    relay_message_id     TEXT
);

-- Soft bounces are counted per address over a window.
CREATE INDEX bounces_address ON bounces (address, received_at);
