-- Every table keeps the hashes of its recent inserts, so a retried batch insert (same dedup token) is
-- dropped at once instead of sitting beside the first until a merge: 0001-0003 gave the window to
-- utterances, dialogues, edits, users and chat_messages only. summaries and action_items get it before
-- they get a writer.
ALTER TABLE {db}.meetings MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.participants MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.transcripts MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.summaries MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.action_items MODIFY SETTING non_replicated_deduplication_window = 1000;
