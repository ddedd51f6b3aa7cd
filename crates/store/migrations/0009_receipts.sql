-- Receipts of outgoing group messages (issue 20): one row per message and
-- recipient, kept under the recipient's phone-number JID when known (else
-- the JID WhatsApp named it by). `expected`: a participant of the group
-- when the message was accepted (the account itself left out): those
-- rows make the message's status. A recipient not expected (joined later)
-- is kept and listed, and counts only when nobody was expected (the group
-- was unknown to the gateway). `status` is 'pending' until a receipt
-- comes, then 'delivered', 'read', 'played' (only forward).
CREATE TABLE message_receipts (
    message_seq   INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    participant   TEXT NOT NULL,
    jid           TEXT NOT NULL,
    pn            TEXT,
    lid           TEXT,
    expected      INTEGER NOT NULL,
    status        TEXT NOT NULL,
    delivered_at  TEXT,
    read_at       TEXT,
    played_at     TEXT,
    -- A receipt finds its row, and the list pages, by this key.
    PRIMARY KEY (message_seq, participant)
) STRICT;
