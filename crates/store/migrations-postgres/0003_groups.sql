-- The groups each session's account is in (see the SQLite migration
-- 0007_groups.sql: the same columns, stored the same way).
CREATE TABLE session_groups (
    session_id    TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    jid           TEXT COLLATE "C" NOT NULL,
    subject       TEXT NOT NULL,
    description   TEXT,
    owner         TEXT,
    created_at    TEXT,
    announce      BOOLEAN NOT NULL,
    locked        BOOLEAN NOT NULL,
    approval      BOOLEAN NOT NULL,
    size          BIGINT NOT NULL,
    participants  TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (session_id, jid)
);
