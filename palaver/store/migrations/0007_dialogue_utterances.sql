-- A dialogue row keeps its revision's utterances (JSON: [{"utterance_id","start_ms","end_ms","text","final"}]),
-- so the REST dialogues and the live socket's snapshot show settled and tentative words as the live events
-- do. JSON in a String, like utterances.words: read whole, never queried inside. '[]' for older rows.
ALTER TABLE {db}.dialogues ADD COLUMN IF NOT EXISTS utterances String DEFAULT '[]' AFTER utterance_ids;
