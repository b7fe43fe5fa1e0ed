-- Writers for users and chat_messages (events on the users and chat topics). A user is soft-deleted: the
-- row stays, reads leave it out. Both tables drop a retried batch insert by its dedup token, like the rest.
ALTER TABLE {db}.users ADD COLUMN IF NOT EXISTS deleted UInt8 DEFAULT 0 AFTER profile_pic_url;
ALTER TABLE {db}.users MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE {db}.chat_messages MODIFY SETTING non_replicated_deduplication_window = 1000;
