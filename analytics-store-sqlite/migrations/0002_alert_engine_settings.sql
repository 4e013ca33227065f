-- The alert engine's per-configuration settings: how long a breach must hold, the
-- hysteresis threshold, whether recovery resolves the alert, and what a window without data
-- means. Existing configurations get the defaults the engine used while these had no columns.
ALTER TABLE alert_configs ADD COLUMN for_secs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alert_configs ADD COLUMN recovery_threshold REAL;
ALTER TABLE alert_configs ADD COLUMN auto_resolve INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alert_configs ADD COLUMN no_data TEXT NOT NULL DEFAULT 'keep'
    CHECK (no_data IN ('ok', 'alerting', 'keep'));
