-- Listing an alert's notifications (alert records carry them): the alert id lives inside the
-- notification document.
CREATE INDEX notification_outbox_alert_idx
    ON notification_outbox ((notification->>'alert_id'), created_at, id);
