-- The Idempotency-Key a chat message or human edit was written with ('' when none), kept with the row so
-- that a request reusing a key is recognised long after the API's memory of it ('' for older rows).
ALTER TABLE {db}.chat_messages ADD COLUMN IF NOT EXISTS idempotency_key String AFTER sent_at;
ALTER TABLE {db}.edits ADD COLUMN IF NOT EXISTS idempotency_key String AFTER edited_at_ms;
