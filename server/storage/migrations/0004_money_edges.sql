-- Money edges: what a channel really collected, refunds refused for good,
-- outbox claims tied to the claiming server's database session, and the
-- fingerprints of the merchant keys every server process must share.

-- A payment attempt whose refund the channel confirmed reads 'refunded';
-- one whose refund the channel refused for good reads 'refund_failed'.
ALTER TABLE payments DROP CONSTRAINT payments_state_check;
ALTER TABLE payments ADD CONSTRAINT payment_state_known
    CHECK (state IN ('started', 'captured', 'refunding', 'refunded', 'refund_failed'));

-- amount_fen is what the channel collected (its own query decides); when the
-- notification said another amount, that amount is kept here and flagged.
ALTER TABLE payment_confirmations ADD COLUMN notified_fen bigint
    CONSTRAINT notified_amount_differs CHECK (notified_fen IS DISTINCT FROM amount_fen);

-- A refund the channel refused for good: when, and the channel's code and message.
ALTER TABLE refunds
    ADD COLUMN failed_at timestamptz,
    ADD COLUMN failure   text,
    ADD CONSTRAINT refund_failure_explained CHECK ((failed_at IS NULL) = (failure IS NULL)),
    ADD CONSTRAINT refund_confirmed_or_failed CHECK (confirmed_at IS NULL OR failed_at IS NULL);

-- lease_key: the advisory lock (see server/outbox.py) held by the database
-- session of the server delivering the row; when that session is gone, the
-- row is free at once. failed_at: delivered no more (the channel refused for good).
ALTER TABLE outbox
    ADD COLUMN lease_key integer,
    ADD COLUMN failed_at timestamptz;
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_leased ON outbox (lease_key) WHERE lease_key IS NOT NULL;

-- SHA-256 fingerprints of the merchant key of each QR channel, recorded by the
-- first server to start: a server whose keys file holds other keys refuses to start.
CREATE TABLE channel_key_fingerprints (
    channel      text PRIMARY KEY,
    fingerprint  text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
