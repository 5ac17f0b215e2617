-- Reconciliation: each run of a business date and channel against the channel's bill (or its
-- query API), and each difference found, kept across runs by a stable key.

CREATE TABLE recon_runs (
    run_id      bigserial PRIMARY KEY,
    bill_date   date NOT NULL,
    channel     text NOT NULL,
    source      text NOT NULL CHECK (source IN ('bill', 'file', 'query')),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL CHECK (finished_at >= started_at),
    lines       integer NOT NULL CHECK (lines >= 0),
    found       integer NOT NULL CHECK (found >= 0),
    fixed       integer NOT NULL CHECK (fixed >= 0),
    open        integer NOT NULL CHECK (open >= 0),
    waiting     integer NOT NULL CHECK (waiting >= 0)
);
CREATE INDEX recon_runs_by_date ON recon_runs (bill_date, channel, run_id);

-- A difference of one business date and channel. 'open': for a person; 'fixed': a run fixed it
-- through the owner's actor; 'waiting': near midnight, the next day's bill is not in yet;
-- 'resolved': a later run no longer found it.
CREATE TABLE recon_differences (
    bill_date      date NOT NULL,
    channel        text NOT NULL,
    key            text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('unknown_here', 'missing_at_channel',
                       'amount_mismatch', 'status_mismatch', 'duplicate_collection',
                       'fee_mismatch')),
    status         text NOT NULL CHECK (status IN ('open', 'fixed', 'waiting', 'resolved')),
    detail         text NOT NULL,
    out_trade_no   text,
    channel_txn_id text,
    out_refund_no  text,
    local_fen      bigint,
    channel_fen    bigint,
    owner_kind     text CHECK (owner_kind IN ('order', 'rental')),
    owner_id       text,
    fix            text,
    first_run      bigint NOT NULL REFERENCES recon_runs,
    last_run       bigint NOT NULL REFERENCES recon_runs,
    found_at       timestamptz NOT NULL,
    settled_at     timestamptz,
    PRIMARY KEY (bill_date, channel, key),
    CONSTRAINT settled_differences_have_a_time
        CHECK ((status IN ('fixed', 'resolved')) = (settled_at IS NOT NULL))
);
CREATE INDEX recon_differences_unsettled ON recon_differences (channel)
    WHERE status IN ('open', 'waiting');
