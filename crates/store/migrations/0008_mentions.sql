-- The people a message @mentions (issue 21): their JIDs, space-separated;
-- NULL for none.
ALTER TABLE messages ADD COLUMN mentions TEXT;
