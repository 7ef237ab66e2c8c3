-- Every complaint (ARF report) received, traced to its message when that
-- was possible: the deliverability report computes complaint rates per
-- stream and sending domain from it.
CREATE TABLE complaints (
    id                TEXT PRIMARY KEY,
    received_at       BIGINT NOT NULL,
    address           TEXT NOT NULL,
    feedback_type     TEXT NOT NULL,
    relay_message_id  TEXT,
    stream            TEXT
);
CREATE INDEX complaints_received ON complaints (received_at);
CREATE INDEX recipients_created ON recipients (created_at);
CREATE INDEX attempts_finished ON attempts (finished_at);
