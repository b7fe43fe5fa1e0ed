-- A meeting's glossary (MeetingChangedV1.glossary): its own terms for its speech decoder, set by the API.
-- Rows stored before it have none (an empty array).
ALTER TABLE {db}.meetings ADD COLUMN IF NOT EXISTS glossary Array(String) AFTER agenda;
