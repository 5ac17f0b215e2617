-- Devices that may connect: kiosks, counters, gates, rental desks, channels, admins.
-- Only a SHA-256 hash of each device's token is stored.
CREATE TABLE devices (
    device_id   text PRIMARY KEY
                CONSTRAINT device_id_format CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    role        text NOT NULL
                CONSTRAINT device_role_known
                CHECK (role IN ('kiosk', 'counter', 'gate', 'rental', 'channel', 'admin')),
    token_hash  bytea NOT NULL CONSTRAINT token_hash_is_sha256 CHECK (length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
