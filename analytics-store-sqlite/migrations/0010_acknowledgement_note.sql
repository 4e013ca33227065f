-- The note given when an alert is acknowledged (POST /alerts/{id}/acknowledge {"note"}).
ALTER TABLE alert_history ADD COLUMN acknowledgement_note TEXT;
