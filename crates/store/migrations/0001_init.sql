-- Sessions: one linked WhatsApp device each, owned by one organization.
-- Timestamps are RFC 3339 text in UTC; ids sort by creation time (ULIDs).
CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY NOT NULL,
    org_id             TEXT NOT NULL,
    name               TEXT,
    status             TEXT NOT NULL,
    jid                TEXT,
    push_name          TEXT,
    keep_connected     INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    last_connected_at  TEXT,
    last_error_code    TEXT,
    last_error_message TEXT
) STRICT;

CREATE INDEX sessions_by_org ON sessions (org_id, id DESC);
CREATE INDEX sessions_to_reconnect ON sessions (keep_connected) WHERE keep_connected = 1;

-- API keys: only the SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    org_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;

CREATE INDEX api_keys_by_org ON api_keys (org_id, id);
