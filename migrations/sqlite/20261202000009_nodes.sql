-- Relay processes sharing this database. Each has a persistent node id
-- (config `node_id`, or the `node_id_file` it creates); `run_id` changes
-- with every start. A relay renews `heartbeat_at` and the leases it holds
-- every lease/3; when it starts again it takes back at once the leases its
-- previous run held (`recipients.leased_by`), instead of letting them run
-- out.
CREATE TABLE nodes (
    node_id       TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    hostname      TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    version       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL
);

ALTER TABLE recipients ADD COLUMN leased_by TEXT;
-- The heartbeat and the restart reclaim find a node's leases through this.
CREATE INDEX recipients_leased ON recipients (leased_by) WHERE state = 'inflight';
