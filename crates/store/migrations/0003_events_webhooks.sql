-- The per-organization event log. `seq` orders one organization's events;
-- it is handed out from event_logs.last_seq inside the writing transaction,
-- so a writer holds the organization's counter until it commits and no
-- reader can see seq N+1 before N (also on PostgreSQL, where the same
-- UPDATE … RETURNING takes a row lock).
CREATE TABLE event_logs (
    org_id         TEXT PRIMARY KEY NOT NULL,
    last_seq       INTEGER NOT NULL DEFAULT 0,
    -- Events up to here were pruned: a cursor before it is 410 gone.
    pruned_through INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE events (
    org_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    id          TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    session_id  TEXT,
    occurred_at TEXT NOT NULL,
    occurred_ms INTEGER NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
) STRICT;

CREATE INDEX events_by_age ON events (occurred_ms);

CREATE TABLE webhooks (
    id                    TEXT PRIMARY KEY NOT NULL,
    org_id                TEXT NOT NULL,
    url                   TEXT NOT NULL,
    events                TEXT NOT NULL,  -- patterns, comma-separated
    session_ids           TEXT,           -- comma-separated; NULL: all
    description           TEXT NOT NULL,
    enabled               INTEGER NOT NULL,
    disabled_reason       TEXT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until INTEGER,        -- Unix ms
    failing_since         INTEGER,        -- Unix ms of the first failure in an unbroken run
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
) STRICT;

CREATE INDEX webhooks_by_org ON webhooks (org_id, id);

-- One row per (webhook, event): the outbox. Written in the transaction
-- that writes the event, so a committed event's deliveries survive a crash.
CREATE TABLE deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    org_id          TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_seq       INTEGER,              -- NULL: a test event, carried in body
    body            TEXT,
    state           TEXT NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    next_ms         INTEGER,              -- due at (Unix ms) while pending
    claimed_until   INTEGER,              -- a dispatcher holds it until then
    response_status INTEGER,
    error           TEXT,
    at              TEXT NOT NULL,
    duration_ms     INTEGER,
    UNIQUE (webhook_id, event_id)
) STRICT;

CREATE INDEX deliveries_due ON deliveries (webhook_id, next_ms, seq) WHERE state = 'pending';
CREATE INDEX deliveries_log ON deliveries (webhook_id, seq DESC);
