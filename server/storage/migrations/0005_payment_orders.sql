-- Orders of one amount and no lines: a rental's deposit and prepaid usage, and the
-- compensation of a rental whose charges came to more than its visitor paid.

-- What an order's money is for: it decides where a capture is booked.
ALTER TABLE orders
    ADD COLUMN purpose text NOT NULL DEFAULT 'tickets'
        CONSTRAINT order_purpose_known CHECK (purpose IN ('tickets', 'rental', 'compensation')),
    ADD COLUMN rental_id text,
    -- a rental order's settlement: what it kept, and the refund number of its release
    ADD COLUMN kept_fen bigint CONSTRAINT kept_within_total CHECK (kept_fen BETWEEN 0 AND total_fen),
    ADD COLUMN settled_refund_no text,
    ADD CONSTRAINT rental_orders_name_their_rental
        CHECK ((purpose = 'tickets') = (rental_id IS NULL)),
    ADD CONSTRAINT only_rental_orders_settle
        CHECK (kept_fen IS NULL OR purpose = 'rental'),
    ADD CONSTRAINT a_settlement_has_its_number
        CHECK ((kept_fen IS NULL) = (settled_refund_no IS NULL));
CREATE INDEX orders_by_rental ON orders (rental_id) WHERE rental_id IS NOT NULL;
