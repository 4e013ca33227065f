-- Quiet hours (JSON {"start","end","timezone"} or 'null') and a team's members (a JSON
-- array of user ids) on notification preferences.
ALTER TABLE notification_preferences ADD COLUMN quiet_hours TEXT NOT NULL DEFAULT 'null';
ALTER TABLE notification_preferences ADD COLUMN members TEXT NOT NULL DEFAULT '[]';
