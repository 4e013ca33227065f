-- Quiet hours ({"start","end","timezone"}; NULL: none) and a team's members (a JSON array
-- of user ids) on notification preferences.
ALTER TABLE notification_preferences ADD COLUMN quiet_hours jsonb;
ALTER TABLE notification_preferences ADD COLUMN members jsonb NOT NULL DEFAULT '[]';
