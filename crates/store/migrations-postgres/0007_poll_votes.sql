-- Polls (issue 21): each voter's current vote on a poll message (the
-- options picked, by their text, as a JSON array; empty: taken back) and
-- when they cast it (a later vote replaces it, an older one arriving late
-- does not). Redelivered votes are kept out by message_changes, like edits.
CREATE TABLE poll_votes (
    poll_seq  BIGINT NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    voter     TEXT COLLATE "C" NOT NULL,
    selected  TEXT NOT NULL,
    at        TEXT NOT NULL,
    PRIMARY KEY (poll_seq, voter)
);
