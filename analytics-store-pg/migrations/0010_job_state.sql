-- A job's state document beside its watermark: the alert engine stores its whole state
-- (pending breaches, cooldowns, reminder schedules) in the same transaction as the alerts
-- and outbox entries of the step that produced it. Existing rows have no state.
ALTER TABLE job_watermarks ADD COLUMN state text;
