-- Trusted bounce and complaint processing: each bounce records which
-- recipient of which message it was traced to and how (`attribution`:
-- relay, verp, message_id, unattributed), and the reason read from it.
-- An unattributed bounce suppresses nobody and counts toward no soft-bounce
-- limit; a second bounce for the same message, recipient and action is a
-- replay, found through `bounces_traced`.
ALTER TABLE bounces ADD COLUMN recipient_idx BIGINT;
ALTER TABLE bounces ADD COLUMN reason TEXT;
ALTER TABLE bounces ADD COLUMN attribution TEXT;
CREATE INDEX bounces_traced ON bounces (relay_message_id, recipient_idx);

ALTER TABLE complaints ADD COLUMN recipient_idx BIGINT;
CREATE INDEX complaints_traced ON complaints (relay_message_id, recipient_idx);

-- A bounce without a valid VERP tag is matched by the Message-ID of the
-- message it returns.
CREATE INDEX messages_message_id_header ON messages (message_id_header);
