-- A bill file sent to the server in parts (a real day's bill is larger than one frame):
-- `recon.upload` stores each part, `recon.run` with `upload` reads them in order, whole.
CREATE TABLE bill_uploads (
    upload_id   text NOT NULL CHECK (upload_id ~ '^[A-Za-z0-9_-]{1,40}$'),
    part        integer NOT NULL CHECK (part >= 0),
    data        bytea NOT NULL,
    last        boolean NOT NULL,
    device_id   text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (upload_id, part)
);
