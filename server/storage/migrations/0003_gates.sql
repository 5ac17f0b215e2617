-- Gates: ticket use, every scan and its verdict, gate modes, offline conflicts, signing keys.

-- The Ed25519 key that signs ticket codes for offline checks, beside each HMAC secret.
ALTER TABLE site_keys ADD COLUMN signing_key bytea CHECK (length(signing_key) = 32);

-- A ticket's code as issued, and its use. The version makes a second server
-- process's stale copy fail its write instead of admitting twice.
ALTER TABLE tickets
    ADD COLUMN code         text,
    ADD COLUMN entries_used integer NOT NULL DEFAULT 0 CHECK (entries_used >= 0),
    ADD COLUMN inside       boolean NOT NULL DEFAULT false,
    ADD COLUMN version      integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT entries_within_entitlement
        CHECK (entries_allowed IS NULL OR entries_used <= entries_allowed);

CREATE TABLE gates (
    gate_id     text PRIMARY KEY,
    mode        text NOT NULL CHECK (mode IN ('normal', 'locked', 'free')),
    changed_at  timestamptz NOT NULL,
    changed_by  text NOT NULL
);

-- Every scan and its verdict. A gate's scan id is recorded once: a scan sent
-- again after a reconnect gets the stored verdict back.
CREATE TABLE scans (
    scan_pk      bigserial PRIMARY KEY,
    gate_id      text NOT NULL,
    scan_id      text NOT NULL,
    ticket_id    text REFERENCES tickets,
    zone         text NOT NULL,
    direction    text NOT NULL CHECK (direction IN ('entry', 'exit')),
    at           timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    granted      boolean NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('ok', 'forged', 'unknown', 'not_today',
                     'wrong_slot', 'used_up', 'refunded', 'passback', 'wrong_gate',
                     'gate_closed')),
    entries_left integer,
    consumed     boolean NOT NULL,
    passed       boolean,
    passed_at    timestamptz,
    offline      boolean NOT NULL DEFAULT false,
    code_hint    text,
    CONSTRAINT one_record_per_scan UNIQUE (gate_id, scan_id),
    CONSTRAINT only_grants_consume CHECK (granted OR NOT consumed)
);
CREATE INDEX scans_by_ticket ON scans (ticket_id);
CREATE INDEX scans_by_time ON scans (at);

-- What merging offline gates' journals found: admissions the server would have refused.
CREATE TABLE gate_conflicts (
    conflict_id  bigserial PRIMARY KEY,
    gate_id      text NOT NULL,
    scan_id      text NOT NULL,
    ticket_id    text,
    kind         text NOT NULL,
    detail       text NOT NULL,
    at           timestamptz NOT NULL,
    found_at     timestamptz NOT NULL
);
