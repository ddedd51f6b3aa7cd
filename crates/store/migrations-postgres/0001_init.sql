-- wagate's own rows on PostgreSQL: the same tables, columns and encodings
-- as the SQLite schema (crates/store/migrations, 0001 to 0005), so one row
-- mapping serves both and a database moves from one to the other row by
-- row. Times are RFC 3339 text in UTC (exact to the nanosecond, as the
-- domain keeps them), with Unix-millisecond columns where SQL compares
-- times. Ids are ULID-based text compared bytewise (COLLATE "C"), so their
-- order is creation order whatever the database's locale.
--
-- Several gateways may share this database: writes that read first lock
-- what they read (FOR UPDATE), the per-organization event counter is a row
-- taken with UPDATE … RETURNING inside the writing transaction, deliveries
-- are claimed with FOR UPDATE SKIP LOCKED. Session ownership (an owner node
-- and epoch per session, fencing every write) comes with the leases, in a
-- table of its own keyed by session id.

CREATE TABLE sessions (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    org_id             TEXT COLLATE "C" NOT NULL,
    name               TEXT,
    status             TEXT NOT NULL,
    jid                TEXT,
    push_name          TEXT,
    keep_connected     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    last_connected_at  TEXT,
    last_error_code    TEXT,
    last_error_message TEXT,
    -- A logout or delete accepted but not finished ('logout' | 'delete').
    pending_op         TEXT,
    -- Bumped by every stored change; conditional writes name the revision they read.
    revision           BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX sessions_by_org ON sessions (org_id, id DESC);
-- What a starting gateway must act on (SessionRegistry::to_resume).
CREATE INDEX sessions_to_resume ON sessions (id)
    WHERE keep_connected OR pending_op IS NOT NULL
       OR status IN ('pairing', 'connecting', 'connected');

-- API keys: only the SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    org_id       TEXT COLLATE "C" NOT NULL,
    name         TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
);

CREATE INDEX api_keys_by_org ON api_keys (org_id, id);

-- The per-organization event log. `seq` orders one organization's events;
-- it is handed out from event_logs.last_seq inside the writing transaction,
-- whose row lock holds the organization's counter until it commits: no
-- reader on any node sees seq N+1 before N.
CREATE TABLE event_logs (
    org_id         TEXT COLLATE "C" PRIMARY KEY,
    last_seq       BIGINT NOT NULL DEFAULT 0,
    -- Events up to here were pruned: a cursor before it is 410 gone.
    pruned_through BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE events (
    org_id      TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    session_id  TEXT COLLATE "C",
    occurred_at TEXT NOT NULL,
    occurred_ms BIGINT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
);

CREATE INDEX events_by_age ON events (occurred_ms);

CREATE TABLE webhooks (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    org_id                TEXT COLLATE "C" NOT NULL,
    url                   TEXT NOT NULL,
    events                TEXT NOT NULL,  -- patterns, comma-separated
    session_ids           TEXT,           -- comma-separated; NULL: all
    description           TEXT NOT NULL,
    enabled               BOOLEAN NOT NULL,
    disabled_reason       TEXT,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until BIGINT,         -- Unix ms
    failing_since         BIGINT,         -- Unix ms of the first failure in an unbroken run
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);

CREATE INDEX webhooks_by_org ON webhooks (org_id, id);

-- One row per (webhook, event): the outbox, written in the transaction
-- that writes the event.
CREATE TABLE deliveries (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    org_id          TEXT COLLATE "C" NOT NULL,
    event_id        TEXT COLLATE "C" NOT NULL,
    event_seq       BIGINT,               -- NULL: a test event, carried in body
    body            TEXT,
    state           TEXT NOT NULL,
    attempt         BIGINT NOT NULL DEFAULT 0,
    next_ms         BIGINT,               -- due at (Unix ms) while pending
    claimed_until   BIGINT,               -- a dispatcher holds it until then
    response_status BIGINT,
    error           TEXT,
    at              TEXT NOT NULL,
    duration_ms     BIGINT,
    UNIQUE (webhook_id, event_id)
);

CREATE INDEX deliveries_due ON deliveries (webhook_id, next_ms, seq) WHERE state = 'pending';
CREATE INDEX deliveries_log ON deliveries (webhook_id, seq DESC);
CREATE INDEX deliveries_held ON deliveries (webhook_id, claimed_until)
    WHERE state = 'pending' AND claimed_until IS NOT NULL;

-- Messages of one-to-one chats, both ways, named by (session, chat,
-- sender, id); `seq` orders a session's messages and is the list cursor.
CREATE TABLE messages (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          TEXT COLLATE "C" NOT NULL,
    session_id      TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    chat            TEXT COLLATE "C" NOT NULL,
    sender          TEXT COLLATE "C" NOT NULL,
    id              TEXT COLLATE "C" NOT NULL,
    from_me         BOOLEAN NOT NULL,
    sender_pn       TEXT,
    sender_lid      TEXT,
    recipient       TEXT NOT NULL,
    type            TEXT NOT NULL,
    text            TEXT,
    caption         TEXT,
    media_mimetype  TEXT,
    media_filename  TEXT,
    media_size      BIGINT,
    media_sha256    TEXT,
    voice_note      BOOLEAN NOT NULL DEFAULT FALSE,
    -- Inbound media: the adapter's opaque handle to download it.
    media_ref       BYTEA,
    -- Outgoing media: the bytes to upload, kept until the message is sent.
    media_data      BYTEA,
    reply_to        TEXT,
    status          TEXT NOT NULL,
    -- A pending message handed to WhatsApp (no server ack yet).
    handed_at       TEXT,
    sent_at         TEXT,
    delivered_at    TEXT,
    read_at         TEXT,
    played_at       TEXT,
    error_code      TEXT,
    error_message   TEXT,
    error_nack      BIGINT,
    timestamp       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    UNIQUE (session_id, chat, sender, id)
);

CREATE INDEX messages_by_session ON messages (session_id, seq);
CREATE INDEX messages_by_chat ON messages (session_id, chat, seq);
CREATE INDEX messages_by_id ON messages (session_id, id);
CREATE INDEX messages_pending ON messages (session_id, seq) WHERE status = 'pending';

CREATE TABLE message_reactions (
    session_id  TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    chat        TEXT COLLATE "C" NOT NULL,
    sender      TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    target      TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (session_id, chat, sender, id)
);

-- Idempotency-Key → the first answer, for 24 h.
CREATE TABLE idempotency_keys (
    org_id        TEXT COLLATE "C" NOT NULL,
    session_id    TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    request_hash  BYTEA NOT NULL,
    message_id    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    PRIMARY KEY (org_id, session_id, key)
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms);
