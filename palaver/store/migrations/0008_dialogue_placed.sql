-- A dialogue row says whether the meeting's watermark has passed it (DialogueUpdateV1.placed): its words are
-- final as soon as its speaker is past it (status 'final'), its position only once it is placed. The merged
-- transcript and the live socket's resume count placed dialogues only. Rows stored before it were final
-- only once placed: the default says so for them.
ALTER TABLE {db}.dialogues ADD COLUMN IF NOT EXISTS placed Bool DEFAULT status = 'final' AFTER position;
