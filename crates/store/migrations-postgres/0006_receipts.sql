-- Receipts of outgoing group messages (see the SQLite migration
-- 0009_receipts.sql: the same columns, stored the same way).
CREATE TABLE message_receipts (
    message_seq   BIGINT NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    participant   TEXT COLLATE "C" NOT NULL,
    jid           TEXT NOT NULL,
    pn            TEXT,
    lid           TEXT,
    expected      BOOLEAN NOT NULL,
    status        TEXT NOT NULL,
    delivered_at  TEXT,
    read_at       TEXT,
    played_at     TEXT,
    PRIMARY KEY (message_seq, participant)
);
