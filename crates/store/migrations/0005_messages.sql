-- Messages of one-to-one chats, both ways. A message is named by
-- (session, chat, sender, id): the unique constraint makes recording a
-- redelivered inbound message a no-op (no second row, no second event).
-- `seq` orders a session's messages (newest first = seq DESC) and is the
-- list cursor; on PostgreSQL it is a BIGINT identity column.
CREATE TABLE messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id          TEXT NOT NULL,
    session_id      TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    chat            TEXT NOT NULL,
    sender          TEXT NOT NULL,
    id              TEXT NOT NULL,
    from_me         INTEGER NOT NULL,
    sender_pn       TEXT,
    sender_lid      TEXT,
    recipient       TEXT NOT NULL,
    type            TEXT NOT NULL,
    text            TEXT,
    caption         TEXT,
    media_mimetype  TEXT,
    media_filename  TEXT,
    media_size      INTEGER,
    media_sha256    TEXT,
    voice_note      INTEGER NOT NULL DEFAULT 0,
    -- Inbound media: the adapter's opaque handle to download it.
    media_ref       BLOB,
    -- Outgoing media: the bytes to upload, kept until the message is sent.
    media_data      BLOB,
    reply_to        TEXT,
    status          TEXT NOT NULL,
    -- A pending message handed to WhatsApp (no server ack yet): not sent
    -- again until the session reconnects or the gateway restarts.
    handed_at       TEXT,
    sent_at         TEXT,
    delivered_at    TEXT,
    read_at         TEXT,
    played_at       TEXT,
    error_code      TEXT,
    error_message   TEXT,
    error_nack      INTEGER,
    timestamp       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    UNIQUE (session_id, chat, sender, id)
) STRICT;

CREATE INDEX messages_by_session ON messages (session_id, seq);
CREATE INDEX messages_by_chat ON messages (session_id, chat, seq);
CREATE INDEX messages_by_id ON messages (session_id, id);
-- The sender's queue: a session's pending messages, oldest first.
CREATE INDEX messages_pending ON messages (session_id, seq) WHERE status = 'pending';

-- Reactions received (not messages of the list); kept to deduplicate a
-- redelivered reaction, as messages are.
CREATE TABLE message_reactions (
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    chat        TEXT NOT NULL,
    sender      TEXT NOT NULL,
    id          TEXT NOT NULL,
    target      TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (session_id, chat, sender, id)
) STRICT;

-- Idempotency-Key → the first answer, for 24 h.
CREATE TABLE idempotency_keys (
    org_id        TEXT NOT NULL,
    session_id    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    request_hash  BLOB NOT NULL,
    message_id    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (org_id, session_id, key)
) STRICT;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms);
