-- Where a meeting's media time 0 is on the wall clock (StreamStartedV1.timeline_epoch_ms), kept with each
-- participant's stream: a page that streams no audio of its own shows a dialogue's wall-clock time from it.
-- Rows stored before it have none (NULL).
ALTER TABLE {db}.participants ADD COLUMN IF NOT EXISTS timeline_epoch_ms Nullable(Int64) AFTER stream_start_ms;
