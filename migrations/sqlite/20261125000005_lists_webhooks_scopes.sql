-- Key scopes beside streams: 'webhooks' (the inbound bounce, complaint and
-- unsubscribe webhooks), 'lists' (lists and subscribers, outbound event
-- endpoints), 'suppressions' (the suppression list). Comma-separated.
ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT '';

-- Bounces now also come from the relay's own 5xx replies (`source` =
-- 'relay'), and carry the stream and destination domain so policy blocks can
-- be counted where they happen. A later successful delivery to the address
-- sets `reset_at` on its soft bounces: they no longer count.
ALTER TABLE bounces ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook';
ALTER TABLE bounces ADD COLUMN stream TEXT;
ALTER TABLE bounces ADD COLUMN domain TEXT;
ALTER TABLE bounces ADD COLUMN reset_at BIGINT;
CREATE INDEX bounces_received ON bounces (received_at);

-- Mailing lists: `id` is the shop's own slug ('newsletter').
CREATE TABLE lists (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    from_address  TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- One row per address and list. `status`: pending, confirmed, unsubscribed,
-- bounced, complained, pruned. `confirm_hash` is the SHA-256 of the
-- outstanding confirmation link's secret: cleared when used, so a link
-- confirms once.
CREATE TABLE subscribers (
    list_id            TEXT NOT NULL REFERENCES lists (id),
    address            TEXT NOT NULL,
    status             TEXT NOT NULL,
    confirm_hash       TEXT,
    confirm_sent_at    BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    confirmed_at       BIGINT,
    last_delivered_at  BIGINT,
    last_open_at       BIGINT,
    last_click_at      BIGINT,
    reengaged_at       BIGINT,
    PRIMARY KEY (list_id, address)
);
CREATE INDEX subscribers_address ON subscribers (address);
CREATE INDEX subscribers_confirm ON subscribers (confirm_hash);
CREATE INDEX subscribers_status ON subscribers (status, created_at);

-- The consent trail: every change of a subscriber's status, with when, from
-- where and why; for opt-ins the IP address and user agent too. Rows are
-- only ever added.
CREATE TABLE subscriber_events (
    id          TEXT PRIMARY KEY,
    list_id     TEXT NOT NULL,
    address     TEXT NOT NULL,
    at          BIGINT NOT NULL,
    status      TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT,
    ip          TEXT,
    user_agent  TEXT
);
CREATE INDEX subscriber_events_subscriber ON subscriber_events (list_id, address, at);

-- Outbound event webhooks. `events` is ',delivered,bounced,' (leading and
-- trailing commas so one LIKE finds a name). The signing secret is kept as
-- it is: it must sign every delivery.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    deleted_at  BIGINT
);

-- The outbox: one row per event and endpoint, written in the same breath as
-- the event, sent until a 2xx answer or until it gives up. `next_attempt_at`
-- doubles as the lease expiry while a sender holds the row.
CREATE TABLE webhook_deliveries (
    event_id         TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    event            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_token      TEXT,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
