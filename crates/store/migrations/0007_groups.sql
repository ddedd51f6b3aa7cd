-- The groups each session's account is in, as the gateway last heard of
-- them: written whole on connect (what WhatsApp lists) and when a group
-- notice arrives, with its `group.*` event. `participants` is a JSON array
-- of participant objects ({jid, pn, lid, role}); `size` their number.
CREATE TABLE session_groups (
    session_id    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    jid           TEXT NOT NULL,
    subject       TEXT NOT NULL,
    description   TEXT,
    owner         TEXT,
    created_at    TEXT,
    announce      INTEGER NOT NULL,
    locked        INTEGER NOT NULL,
    approval      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    participants  TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    -- `GET /groups` pages a session's groups by JID: this key is the index.
    PRIMARY KEY (session_id, jid)
) STRICT;
