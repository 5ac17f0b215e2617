-- Selling: the catalog, capacity, orders, payments, refunds, tickets, the ledger, the outbox.
-- The actors decide; these constraints are the backstop when two processes race.

-- The catalog on sale (the TOML text `scenic catalog load` stored); one row.
CREATE TABLE catalog (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    source      text NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

-- Keys that tag ticket codes. Retired keys stay for looking codes up, never for new codes.
CREATE TABLE site_keys (
    key_id      text PRIMARY KEY CHECK (key_id ~ '^[a-z0-9]{1,8}$'),
    secret      bytea NOT NULL CHECK (length(secret) >= 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);

-- Visitors a date (and slot; '' for whole-day tickets) may admit, and how many are held.
CREATE TABLE capacity (
    visit_date  date NOT NULL,
    slot        text NOT NULL,
    capacity    integer NOT NULL CHECK (capacity >= 0),
    reserved    integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (visit_date, slot),
    CONSTRAINT capacity_not_oversold CHECK (reserved <= capacity)
);

CREATE TABLE orders (
    order_id    text PRIMARY KEY,
    device_id   text NOT NULL,
    client_key  text NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'paid', 'expired', 'cancelled')),
    total_fen   bigint NOT NULL CHECK (total_fen >= 0),
    lines       jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL CHECK (expires_at > created_at),
    paid_at     timestamptz,
    closed_at   timestamptz,
    -- bumped by every change: a server whose cached copy is stale finds out at write time
    version     integer NOT NULL DEFAULT 0,
    CONSTRAINT one_order_per_client_key UNIQUE (device_id, client_key),
    CONSTRAINT paid_orders_have_a_time CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);
CREATE INDEX orders_pending_by_expiry ON orders (expires_at) WHERE status = 'pending';

-- One attempt to pay an order by one channel, under our merchant number.
CREATE TABLE payments (
    out_trade_no text PRIMARY KEY,
    order_id     text NOT NULL REFERENCES orders,
    channel      text NOT NULL CHECK (channel IN ('wechat', 'alipay', 'cash', 'card')),
    amount_fen   bigint NOT NULL CHECK (amount_fen >= 0),
    state        text NOT NULL CHECK (state IN ('started', 'captured', 'refunding')),
    started_at   timestamptz NOT NULL,
    started_by   text NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);

-- Money a channel (or a cashier) confirmed. A channel transaction is recorded once;
-- an order is captured by at most one of them.
CREATE TABLE payment_confirmations (
    channel        text NOT NULL,
    channel_txn_id text NOT NULL,
    out_trade_no   text NOT NULL REFERENCES payments,
    order_id       text NOT NULL REFERENCES orders,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    paid_at        timestamptz NOT NULL,
    received_at    timestamptz NOT NULL,
    captured       boolean NOT NULL,
    PRIMARY KEY (channel, channel_txn_id)
);
CREATE UNIQUE INDEX one_capture_per_order ON payment_confirmations (order_id) WHERE captured;
CREATE INDEX payment_confirmations_by_order ON payment_confirmations (order_id);
CREATE INDEX payment_confirmations_by_txn ON payment_confirmations (channel_txn_id);

CREATE TABLE refunds (
    out_refund_no  text PRIMARY KEY,
    order_id       text NOT NULL REFERENCES orders,
    out_trade_no   text NOT NULL REFERENCES payments,
    channel        text NOT NULL,
    channel_txn_id text,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    reason         text NOT NULL,
    staff          boolean NOT NULL,
    requested_by   text,
    requested_at   timestamptz NOT NULL,
    confirmed_at   timestamptz
);
CREATE INDEX refunds_by_order ON refunds (order_id);
CREATE UNIQUE INDEX one_refund_per_staff_key ON refunds (order_id, requested_by)
    WHERE requested_by IS NOT NULL;

-- No payment is ever refunded more than it paid: checked as each refund is written,
-- with the payment's confirmations locked so two writers cannot both slip under.
CREATE FUNCTION refund_within_payment() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    paid bigint;
    refunded bigint;
BEGIN
    SELECT amount_fen INTO paid FROM payment_confirmations
     WHERE channel = NEW.channel AND channel_txn_id = NEW.channel_txn_id FOR UPDATE;
    IF paid IS NULL THEN
        RAISE EXCEPTION 'refund % names no confirmed payment', NEW.out_refund_no
            USING ERRCODE = 'check_violation', CONSTRAINT = 'refund_of_a_payment';
    END IF;
    SELECT coalesce(sum(amount_fen), 0) INTO refunded FROM refunds
     WHERE channel = NEW.channel AND channel_txn_id = NEW.channel_txn_id;
    IF refunded + NEW.amount_fen > paid THEN
        RAISE EXCEPTION 'refund % would take % fen back from a payment of % fen',
            NEW.out_refund_no, refunded + NEW.amount_fen, paid
            USING ERRCODE = 'check_violation', CONSTRAINT = 'refund_within_payment';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refund_within_payment BEFORE INSERT ON refunds
    FOR EACH ROW EXECUTE FUNCTION refund_within_payment();

CREATE TABLE tickets (
    ticket_id       text PRIMARY KEY,
    order_id        text NOT NULL REFERENCES orders,
    product_id      text NOT NULL,
    visit_date      date NOT NULL,
    slot            text,
    entries_allowed integer CHECK (entries_allowed > 0),
    price_fen       bigint NOT NULL CHECK (price_fen >= 0),
    status          text NOT NULL CHECK (status IN ('valid', 'refunded')),
    issued_at       timestamptz NOT NULL
);
CREATE INDEX tickets_by_order ON tickets (order_id);
CREATE INDEX tickets_by_date ON tickets (visit_date);

-- Double-entry ledger: debits positive, credits negative; each transaction sums to zero.
CREATE TABLE ledger_transactions (
    txn_id    bigserial PRIMARY KEY,
    order_id  text REFERENCES orders,
    memo      text NOT NULL,
    at        timestamptz NOT NULL
);
CREATE INDEX ledger_transactions_by_order ON ledger_transactions (order_id);

CREATE TABLE ledger_entries (
    entry_id    bigserial PRIMARY KEY,
    txn_id      bigint NOT NULL REFERENCES ledger_transactions,
    account     text NOT NULL CHECK (account ~ '^[a-z]+:[a-z_]+$'),
    amount_fen  bigint NOT NULL CHECK (amount_fen <> 0)
);
CREATE INDEX ledger_entries_by_txn ON ledger_entries (txn_id);

-- Checked at commit, once all of a transaction's lines are in.
CREATE FUNCTION ledger_transaction_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    imbalance bigint;
BEGIN
    SELECT sum(amount_fen) INTO imbalance FROM ledger_entries WHERE txn_id = NEW.txn_id;
    IF imbalance <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % is off by % fen', NEW.txn_id, imbalance
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_transaction_balances';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_transaction_balances AFTER INSERT OR UPDATE ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();

-- Side effects (refund requests, closing payments) written with their cause,
-- delivered by the outbox worker until the channel confirms.
CREATE TABLE outbox (
    outbox_id        bigserial PRIMARY KEY,
    kind             text NOT NULL,
    dedupe_key       text NOT NULL UNIQUE,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    next_attempt_at  timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    done_at          timestamptz,
    last_error       text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL;
