-- The rest of a conversation (issue 21): a location or contact cards a
-- message carries (JSON: {"location": …} or {"contacts": […]}), when its
-- text or caption was last edited, and the edits and deletions received,
-- kept by their own message id so that a redelivered one changes nothing
-- twice and makes no second event.
ALTER TABLE messages ADD COLUMN rich TEXT;
ALTER TABLE messages ADD COLUMN edited_at TEXT;

CREATE TABLE message_changes (
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    chat        TEXT NOT NULL,
    sender      TEXT NOT NULL,
    id          TEXT NOT NULL,
    target      TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (session_id, chat, sender, id)
) STRICT;
