-- The notification outbox with its delivery attempts, in-app notifications, and
-- notification preferences per user and per team.

CREATE TABLE notification_outbox (
    id              uuid PRIMARY KEY,
    -- The whole Notification as JSON.
    notification    jsonb NOT NULL,
    -- 0 info, 1 warning, 2 critical: claims take the highest first.
    severity_rank   smallint NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
-- claim_due: due pending entries, critical first, then oldest due.
CREATE INDEX notification_outbox_due_idx
    ON notification_outbox (severity_rank DESC, next_attempt_at, created_at, id)
    WHERE status = 'pending';

CREATE TABLE notification_attempts (
    seq         bigserial PRIMARY KEY,
    outbox_id   uuid NOT NULL REFERENCES notification_outbox (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    delivered   boolean NOT NULL,
    provider_id text,
    error       text,
    retry_at    timestamptz,
    duration_ms bigint NOT NULL
);
CREATE INDEX notification_attempts_outbox_idx ON notification_attempts (outbox_id, seq);

CREATE TABLE in_app_notifications (
    id         uuid PRIMARY KEY,
    user_id    text COLLATE "C" NOT NULL,
    alert_id   uuid,
    severity   text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    title      text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL,
    read_at    timestamptz
);
CREATE INDEX in_app_notifications_user_idx ON in_app_notifications (user_id, created_at, id);
CREATE INDEX in_app_notifications_unread_idx
    ON in_app_notifications (user_id) WHERE read_at IS NULL;

-- One row per subject (a user or a team), replaced whole.
CREATE TABLE notification_preferences (
    subject_type      text NOT NULL CHECK (subject_type IN ('user', 'team')),
    subject_id        text COLLATE "C" NOT NULL,
    -- [[severity, [channel, ...]], ...] as JSON.
    channels          jsonb NOT NULL,
    email             text,
    phone             text,
    slack_webhook     text,
    mute_non_critical boolean NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (subject_type, subject_id)
);
