-- Orders of one amount and no lines: the compensation of a rental whose charges came to
-- more than the deposit its visitor had paid. Paying one settles the rental's receivable.
ALTER TABLE orders
    ADD COLUMN purpose text NOT NULL DEFAULT 'tickets'
        CONSTRAINT order_purpose_known CHECK (purpose IN ('tickets', 'compensation')),
    ADD COLUMN rental_id text,
    ADD CONSTRAINT compensations_name_their_rental
        CHECK ((purpose = 'tickets') = (rental_id IS NULL)),
    ADD CONSTRAINT one_amount_orders_have_no_lines
        CHECK (purpose = 'tickets' OR lines = '[]'::jsonb);
CREATE UNIQUE INDEX one_compensation_per_rental ON orders (rental_id)
    WHERE purpose = 'compensation';
