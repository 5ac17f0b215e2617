-- Rentals: units and their runtime state, rentals, their deposit holds (two-phase transfers),
-- payments, freezes, refunds, unfreezes, off-ledger memos, and every event.
-- The deposit actor decides; these constraints are the backstop when two processes race.

-- Every unit the catalog lists, and its state now. One row per unit: a unit out is out on
-- exactly one rental. Units the catalog no longer lists keep their row (one may be out).
CREATE TABLE rental_units (
    unit_id     text PRIMARY KEY,
    item_id     text NOT NULL,
    label       text NOT NULL UNIQUE,
    state       text NOT NULL DEFAULT 'available'
                CHECK (state IN ('available', 'out', 'maintenance', 'lost')),
    rental_id   text,
    in_catalog  boolean NOT NULL DEFAULT true,
    changed_at  timestamptz,
    CONSTRAINT a_unit_out_is_on_one_rental CHECK ((state = 'out') = (rental_id IS NOT NULL))
);
CREATE INDEX rental_units_by_item ON rental_units (item_id, state);

-- Units of each item type held back by rentals not yet picked up (any unit of the type).
CREATE TABLE rental_stock (
    item_id   text PRIMARY KEY,
    reserved  integer NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);

CREATE TABLE rentals (
    rental_id        text PRIMARY KEY,
    device_id        text NOT NULL,
    client_key       text NOT NULL,
    status           text NOT NULL CHECK (status IN
                     ('pending', 'held', 'out', 'settled', 'cancelled', 'expired', 'forfeited')),
    business_date    date NOT NULL,
    created_at       timestamptz NOT NULL,
    hold_until       timestamptz NOT NULL,
    deposit_fen      bigint NOT NULL CHECK (deposit_fen >= 0),
    prepaid_fen      bigint NOT NULL CHECK (prepaid_fen >= 0),
    bundle_ticket_id text,
    voucher          text,
    picked_up_at     timestamptz,
    due_at           timestamptz,
    overdue          boolean NOT NULL DEFAULT false,
    closed_at        timestamptz,
    -- the deposit actor's state, whole (server/storage/rental_codec.py)
    state            jsonb NOT NULL,
    -- bumped by every change: a server whose cached copy is stale finds out at write time
    version          integer NOT NULL DEFAULT 0,
    CONSTRAINT one_rental_per_client_key UNIQUE (device_id, client_key),
    CONSTRAINT closed_rentals_have_a_time
        CHECK ((status IN ('settled', 'cancelled', 'expired', 'forfeited')) = (closed_at IS NOT NULL))
);
CREATE INDEX rentals_by_status ON rentals (status) WHERE closed_at IS NULL;
CREATE INDEX rentals_by_date ON rentals (business_date);
-- A bundle ticket covers one rental's usage (a cancelled or expired rental lets it go).
CREATE UNIQUE INDEX one_rental_per_bundle_ticket ON rentals (bundle_ticket_id)
    WHERE bundle_ticket_id IS NOT NULL AND status NOT IN ('cancelled', 'expired');

-- The deposit hold, a two-phase transfer: made once (one row per rental), resolved once:
-- posted (kept) plus voided (released) is the whole hold, and never changes after.
CREATE TABLE rental_holds (
    rental_id    text PRIMARY KEY REFERENCES rentals,
    route        text NOT NULL CHECK (route IN ('pay', 'preauth')),
    channel      text NOT NULL CHECK (channel IN ('wechat', 'alipay', 'cash', 'card')),
    -- the payment's out_trade_no, or the freeze's out_order_no
    reference    text NOT NULL UNIQUE,
    amount_fen   bigint NOT NULL CHECK (amount_fen >= 0),
    held_at      timestamptz NOT NULL,
    resolution   text CHECK (resolution IN ('settled', 'cancelled', 'forfeited', 'lapsed')),
    posted_fen   bigint,
    voided_fen   bigint,
    resolved_at  timestamptz,
    CONSTRAINT a_hold_resolves_whole CHECK (
        (resolution IS NULL AND posted_fen IS NULL AND voided_fen IS NULL AND resolved_at IS NULL)
        OR (resolution IS NOT NULL AND posted_fen >= 0 AND voided_fen >= 0
            AND posted_fen + voided_fen = amount_fen AND resolved_at IS NOT NULL))
);

CREATE FUNCTION a_hold_resolves_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.resolution IS NOT NULL AND (NEW.resolution, NEW.posted_fen, NEW.voided_fen)
        IS DISTINCT FROM (OLD.resolution, OLD.posted_fen, OLD.voided_fen) THEN
        RAISE EXCEPTION 'the hold of rental % is resolved (%) already', OLD.rental_id, OLD.resolution
            USING ERRCODE = 'check_violation', CONSTRAINT = 'a_hold_resolves_once';
    END IF;
    IF (NEW.route, NEW.channel, NEW.reference, NEW.amount_fen)
        IS DISTINCT FROM (OLD.route, OLD.channel, OLD.reference, OLD.amount_fen) THEN
        RAISE EXCEPTION 'the hold of rental % is made once', OLD.rental_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'a_hold_is_made_once';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER a_hold_resolves_once BEFORE UPDATE ON rental_holds
    FOR EACH ROW EXECUTE FUNCTION a_hold_resolves_once();
CREATE TRIGGER a_hold_stays BEFORE DELETE ON rental_holds
    FOR EACH ROW EXECUTE FUNCTION a_hold_resolves_once();

-- A payment asked for a rental: its deposit (the pay route) or a freeze converted into one.
CREATE TABLE rental_payments (
    out_trade_no text PRIMARY KEY,
    rental_id    text NOT NULL REFERENCES rentals,
    channel      text NOT NULL CHECK (channel IN ('wechat', 'alipay', 'cash', 'card')),
    kind         text NOT NULL CHECK (kind IN ('deposit', 'conversion')),
    amount_fen   bigint NOT NULL CHECK (amount_fen >= 0),
    started_at   timestamptz NOT NULL
);
CREATE INDEX rental_payments_by_rental ON rental_payments (rental_id);

-- A freeze (pre-authorisation) asked at a channel for a rental's deposit.
CREATE TABLE rental_freezes (
    out_order_no   text PRIMARY KEY,
    out_request_no text NOT NULL,
    rental_id      text NOT NULL REFERENCES rentals,
    channel        text NOT NULL,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    started_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL CHECK (expires_at > started_at),
    CONSTRAINT one_request_per_freeze UNIQUE (out_order_no, out_request_no)
);
CREATE INDEX rental_freezes_by_rental ON rental_freezes (rental_id);

-- Money a channel (or a desk) confirmed for a rental: a payment, a freeze (by auth_no) or a
-- conversion. A channel transaction is recorded once; a rental is held by at most one.
CREATE TABLE rental_confirmations (
    channel        text NOT NULL,
    channel_txn_id text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('payment', 'freeze', 'conversion')),
    reference      text NOT NULL,
    rental_id      text NOT NULL REFERENCES rentals,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    holds          boolean NOT NULL,
    at             timestamptz NOT NULL,
    PRIMARY KEY (channel, channel_txn_id)
);
CREATE UNIQUE INDEX one_hold_per_rental ON rental_confirmations (rental_id) WHERE holds;
CREATE INDEX rental_confirmations_by_rental ON rental_confirmations (rental_id);
CREATE INDEX rental_confirmations_by_reference ON rental_confirmations (reference);

CREATE TABLE rental_refunds (
    out_refund_no text PRIMARY KEY,
    rental_id     text NOT NULL REFERENCES rentals,
    out_trade_no  text NOT NULL REFERENCES rental_payments,
    channel       text NOT NULL,
    amount_fen    bigint NOT NULL CHECK (amount_fen > 0),
    reason        text NOT NULL,
    requested_at  timestamptz NOT NULL,
    confirmed_at  timestamptz,
    failure       text
);
CREATE INDEX rental_refunds_by_rental ON rental_refunds (rental_id);

-- No rental payment is refunded more than it collected (what the channel confirmed, or what
-- was asked of a conversion not confirmed yet), with the payment locked against a second writer.
CREATE FUNCTION rental_refund_within_payment() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    paid bigint;
    refunded bigint;
BEGIN
    PERFORM 1 FROM rental_payments WHERE out_trade_no = NEW.out_trade_no FOR UPDATE;
    SELECT coalesce(
        (SELECT sum(amount_fen) FROM rental_confirmations
          WHERE reference = NEW.out_trade_no AND kind IN ('payment', 'conversion')),
        (SELECT amount_fen FROM rental_payments WHERE out_trade_no = NEW.out_trade_no))
      INTO paid;
    SELECT coalesce(sum(amount_fen), 0) INTO refunded FROM rental_refunds
     WHERE out_trade_no = NEW.out_trade_no AND out_refund_no <> NEW.out_refund_no;
    IF refunded + NEW.amount_fen > paid THEN
        RAISE EXCEPTION 'refund % would take % fen back from a rental payment of % fen',
            NEW.out_refund_no, refunded + NEW.amount_fen, paid
            USING ERRCODE = 'check_violation', CONSTRAINT = 'rental_refund_within_payment';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER rental_refund_within_payment BEFORE INSERT OR UPDATE OF amount_fen ON rental_refunds
    FOR EACH ROW EXECUTE FUNCTION rental_refund_within_payment();

CREATE TABLE rental_unfreezes (
    out_request_no text PRIMARY KEY,
    rental_id      text NOT NULL REFERENCES rentals,
    out_order_no   text NOT NULL REFERENCES rental_freezes,
    channel        text NOT NULL,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    reason         text NOT NULL,
    requested_at   timestamptz NOT NULL,
    confirmed_at   timestamptz
);
CREATE INDEX rental_unfreezes_by_rental ON rental_unfreezes (rental_id);

-- Money frozen at a channel is not ours: it is tracked off the ledger, here. Frozen > 0;
-- converted, unfrozen or lapsed < 0. A closed rental's memos sum to zero.
CREATE TABLE rental_memos (
    memo_id     bigserial PRIMARY KEY,
    rental_id   text NOT NULL REFERENCES rentals,
    account     text NOT NULL CHECK (account ~ '^preauth:[a-z_]+$'),
    amount_fen  bigint NOT NULL CHECK (amount_fen <> 0),
    memo        text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX rental_memos_by_rental ON rental_memos (rental_id);

-- Every event of every rental, in order: the story and the reports read these.
CREATE TABLE rental_events (
    rental_id  text NOT NULL REFERENCES rentals,
    seq        integer NOT NULL,
    kind       text NOT NULL,
    at         timestamptz NOT NULL,
    body       jsonb NOT NULL,
    PRIMARY KEY (rental_id, seq)
);
CREATE INDEX rental_events_by_time ON rental_events (at);

-- The ledger names a rental for a rental's postings (an order's, or a rental's, never both).
ALTER TABLE ledger_transactions
    ADD COLUMN rental_id text REFERENCES rentals,
    ADD CONSTRAINT ledger_names_one_owner CHECK (order_id IS NULL OR rental_id IS NULL);
CREATE INDEX ledger_transactions_by_rental ON ledger_transactions (rental_id)
    WHERE rental_id IS NOT NULL;
