-- A logout or delete accepted but not finished ('logout' | 'delete'): a
-- gateway stopped half-way finishes it on its next start.
ALTER TABLE sessions ADD COLUMN pending_op TEXT;
-- Bumped by every stored change; conditional writes name the revision they read.
ALTER TABLE sessions ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;

DROP INDEX sessions_to_reconnect;
-- What a starting gateway must act on (SessionRegistry::to_resume).
CREATE INDEX sessions_to_resume ON sessions (id)
    WHERE keep_connected = 1 OR pending_op IS NOT NULL
       OR status IN ('pairing', 'connecting', 'connected');
