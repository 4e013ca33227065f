//! `NotificationOutbox` (claims with `FOR UPDATE SKIP LOCKED` and a lease in
//! `next_attempt_at`), `InAppStore` and `PreferenceStore`.

use analytics_core::error::{Error, Result};
use analytics_core::notification::{
    AttemptOutcome, DeliveryAttempt, InAppNotification, Notification, NotificationPreferences,
    OutboxEntry, OutboxStatus, PreferenceSubject,
};
use analytics_core::ports::{InAppStore, NotificationOutbox, PreferenceStore, in_app_cursor};
use analytics_core::time::truncate_to_micros;
use analytics_core::{EmailAddress, Page, PageRequest, PhoneNumber, UserId, WebhookUrl};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::PgStore;
use crate::error::{corrupt, pg_error};
use crate::sql::{col, parse, push_page, severity_rank, to_i64, to_u64};

const OUTBOX_COLUMNS: &str =
    "id, notification, status, attempts, next_attempt_at, last_error, created_at, sent_at";

fn entry_from_row(row: &PgRow) -> Result<OutboxEntry> {
    const WHAT: &str = "outbox entry";
    let notification: serde_json::Value = col(row, "notification", WHAT)?;
    let status: String = col(row, "status", WHAT)?;
    let attempts: i64 = col(row, "attempts", WHAT)?;
    Ok(OutboxEntry {
        notification: serde_json::from_value(notification).map_err(|e| corrupt(WHAT, e))?,
        status: parse(&status, WHAT, str::parse::<OutboxStatus>)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(WHAT, format_args!("attempts {attempts}")))?,
        next_attempt_at: col(row, "next_attempt_at", WHAT)?,
        last_error: col(row, "last_error", WHAT)?,
        created_at: col(row, "created_at", WHAT)?,
        sent_at: col(row, "sent_at", WHAT)?,
    })
}

fn attempt_from_row(row: &PgRow) -> Result<DeliveryAttempt> {
    const WHAT: &str = "delivery attempt";
    let delivered: bool = col(row, "delivered", WHAT)?;
    let outcome = if delivered {
        AttemptOutcome::Delivered {
            provider_id: col(row, "provider_id", WHAT)?,
        }
    } else {
        let error: Option<String> = col(row, "error", WHAT)?;
        AttemptOutcome::Failed {
            error: error.unwrap_or_default(),
            retry_at: col(row, "retry_at", WHAT)?,
        }
    };
    Ok(DeliveryAttempt {
        at: col(row, "at", WHAT)?,
        outcome,
        duration_ms: to_u64(col(row, "duration_ms", WHAT)?, WHAT)?,
    })
}

/// Writes notifications into the outbox, due at `at`, through `executor` (a pool or the
/// caller's transaction); returns how many were new (the id is the idempotency key).
pub(crate) async fn insert_outbox<'e, E>(
    executor: E,
    notifications: &[Notification],
    at: DateTime<Utc>,
) -> Result<u64>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    if notifications.is_empty() {
        return Ok(0);
    }
    let mut sorted: Vec<&Notification> = notifications.iter().collect();
    // Sorted by id: concurrent enqueues of the same ids wait instead of deadlocking.
    sorted.sort_by_key(|n| n.id);
    let ids: Vec<Uuid> = sorted.iter().map(|n| n.id).collect();
    let ranks: Vec<i16> = sorted.iter().map(|n| severity_rank(n.severity)).collect();
    let bodies = sorted
        .iter()
        .map(|n| {
            serde_json::to_string(n)
                .map_err(|e| Error::Internal(format!("notification does not serialize: {e}")))
        })
        .collect::<Result<Vec<String>>>()?;
    let done = sqlx::query(
        "INSERT INTO notification_outbox \
                 (id, notification, severity_rank, status, attempts, next_attempt_at, created_at) \
             SELECT id, notification::jsonb, rank, 'pending', 0, $4, $4 \
             FROM UNNEST($1::uuid[], $2::text[], $3::int2[]) WITH ORDINALITY \
                 AS t(id, notification, rank, ord) \
             ORDER BY ord \
             ON CONFLICT (id) DO NOTHING",
    )
    .bind(ids)
    .bind(bodies)
    .bind(ranks)
    .bind(truncate_to_micros(at))
    .execute(executor)
    .await
    .map_err(pg_error)?;
    Ok(done.rows_affected())
}

#[async_trait]
impl NotificationOutbox for PgStore {
    async fn enqueue(&self, notifications: &[Notification], at: DateTime<Utc>) -> Result<u64> {
        insert_outbox(self.pool_ref(), notifications, at).await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "WITH due AS ( \
                 SELECT id, next_attempt_at AS due_at FROM notification_outbox \
                 WHERE status = 'pending' AND next_attempt_at <= $1 \
                 ORDER BY severity_rank DESC, next_attempt_at, created_at, id \
                 LIMIT $2 \
                 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE notification_outbox o SET next_attempt_at = $3 \
             FROM due WHERE o.id = due.id \
             RETURNING {cols}, o.severity_rank, due.due_at",
            cols = OUTBOX_COLUMNS
                .split(", ")
                .map(|c| format!("o.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(now)
        .bind(to_i64(limit as u64))
        .bind(truncate_to_micros(now + lease))
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let rank: i16 = col(row, "severity_rank", "outbox entry")?;
                let due_at: DateTime<Utc> = col(row, "due_at", "outbox entry")?;
                Ok(((std::cmp::Reverse(rank), due_at), entry_from_row(row)?))
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING has no order: restore the claim order.
        claimed.sort_by(|(ka, a), (kb, b)| {
            (ka, a.created_at, a.notification.id).cmp(&(kb, b.created_at, b.notification.id))
        });
        Ok(claimed.into_iter().map(|(_, e)| e).collect())
    }

    async fn record_attempt(&self, id: Uuid, attempt: &DeliveryAttempt) -> Result<OutboxEntry> {
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_error)?
        .ok_or_else(|| Error::not_found(format!("outbox entry {id}")))?;
        let mut entry = entry_from_row(&row)?;
        entry.record(attempt);
        let (delivered, provider_id, error, retry_at) = match &attempt.outcome {
            AttemptOutcome::Delivered { provider_id } => (true, provider_id.clone(), None, None),
            AttemptOutcome::Failed { error, retry_at } => {
                (false, None, Some(error.clone()), *retry_at)
            }
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE notification_outbox SET status = $2, attempts = $3, next_attempt_at = $4, \
                 last_error = $5, sent_at = $6 \
             WHERE id = $1 RETURNING {OUTBOX_COLUMNS}"
        )))
        .bind(id)
        .bind(entry.status.as_str())
        .bind(i64::from(entry.attempts))
        .bind(entry.next_attempt_at)
        .bind(&entry.last_error)
        .bind(entry.sent_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(pg_error)?;
        sqlx::query(
            "INSERT INTO notification_attempts \
                 (outbox_id, at, delivered, provider_id, error, retry_at, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(attempt.at)
        .bind(delivered)
        .bind(provider_id)
        .bind(error)
        .bind(retry_at)
        .bind(to_i64(attempt.duration_ms))
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        entry_from_row(&row)
    }

    async fn outbox_entry(&self, id: Uuid) -> Result<OutboxEntry> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification_outbox WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?
        .ok_or_else(|| Error::not_found(format!("outbox entry {id}")))?;
        entry_from_row(&row)
    }

    async fn delivery_attempts(&self, id: Uuid) -> Result<Vec<DeliveryAttempt>> {
        let rows = sqlx::query(
            "SELECT at, delivered, provider_id, error, retry_at, duration_ms \
             FROM notification_attempts WHERE outbox_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn alert_outbox_entries(&self, alert_id: Uuid) -> Result<Vec<OutboxEntry>> {
        // The alert id lives inside the notification document; an alert has a handful of
        // entries and this is read per listed alert, so the expression index below serves it.
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {OUTBOX_COLUMNS} FROM notification_outbox \
             WHERE notification->>'alert_id' = $1 ORDER BY created_at, id"
        )))
        .bind(alert_id.to_string())
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        rows.iter().map(entry_from_row).collect()
    }
}

const IN_APP_COLUMNS: &str = "id, user_id, alert_id, severity, title, body, created_at, read_at";

fn in_app_from_row(row: &PgRow) -> Result<InAppNotification> {
    const WHAT: &str = "in-app notification";
    let user: String = col(row, "user_id", WHAT)?;
    let severity: String = col(row, "severity", WHAT)?;
    Ok(InAppNotification {
        id: col(row, "id", WHAT)?,
        user: parse(&user, WHAT, str::parse::<UserId>)?,
        alert_id: col(row, "alert_id", WHAT)?,
        severity: parse(&severity, WHAT, str::parse)?,
        title: col(row, "title", WHAT)?,
        body: col(row, "body", WHAT)?,
        created_at: col(row, "created_at", WHAT)?,
        read_at: col(row, "read_at", WHAT)?,
    })
}

#[async_trait]
impl InAppStore for PgStore {
    async fn create_in_app(&self, n: &InAppNotification) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO in_app_notifications \
                 (id, user_id, alert_id, severity, title, body, created_at, read_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(n.id)
        .bind(n.user.as_str())
        .bind(n.alert_id)
        .bind(n.severity.as_str())
        .bind(&n.title)
        .bind(&n.body)
        .bind(n.created_at)
        .bind(n.read_at)
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_in_app(
        &self,
        user: &UserId,
        unread_only: bool,
        page: &PageRequest,
    ) -> Result<Page<InAppNotification>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {IN_APP_COLUMNS} FROM in_app_notifications WHERE user_id = "
        ));
        q.push_bind(user.as_str().to_owned());
        if unread_only {
            q.push(" AND read_at IS NULL");
        }
        push_page(&mut q, "created_at", page);
        let rows = q
            .build()
            .fetch_all(self.pool_ref())
            .await
            .map_err(pg_error)?;
        let items = rows
            .iter()
            .map(in_app_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page, in_app_cursor))
    }

    async fn get_in_app(&self, user: &UserId, id: Uuid) -> Result<Option<InAppNotification>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {IN_APP_COLUMNS} FROM in_app_notifications WHERE user_id = $1 AND id = $2"
        )))
        .bind(user.as_str())
        .bind(id)
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?;
        row.as_ref().map(in_app_from_row).transpose()
    }

    async fn mark_in_app_read(
        &self,
        user: &UserId,
        ids: &[Uuid],
        at: DateTime<Utc>,
    ) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE in_app_notifications SET read_at = $3 \
             WHERE user_id = $1 AND id = ANY($2) AND read_at IS NULL",
        )
        .bind(user.as_str())
        .bind(ids)
        .bind(at)
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        Ok(done.rows_affected())
    }

    async fn unread_in_app(&self, user: &UserId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM in_app_notifications WHERE user_id = $1 AND read_at IS NULL",
        )
        .bind(user.as_str())
        .fetch_one(self.pool_ref())
        .await
        .map_err(pg_error)?;
        to_u64(n, "in-app notification count")
    }
}

fn subject_key(s: &PreferenceSubject) -> (&'static str, &str) {
    match s {
        PreferenceSubject::User(u) => ("user", u.as_str()),
        PreferenceSubject::Team(t) => ("team", t.as_str()),
    }
}

fn preferences_from_row(row: &PgRow) -> Result<NotificationPreferences> {
    const WHAT: &str = "notification preferences";
    let kind: String = col(row, "subject_type", WHAT)?;
    let id: String = col(row, "subject_id", WHAT)?;
    let channels: serde_json::Value = col(row, "channels", WHAT)?;
    let email: Option<String> = col(row, "email", WHAT)?;
    let phone: Option<String> = col(row, "phone", WHAT)?;
    let slack: Option<String> = col(row, "slack_webhook", WHAT)?;
    Ok(NotificationPreferences {
        subject: match kind.as_str() {
            "user" => PreferenceSubject::User(parse(&id, WHAT, str::parse::<UserId>)?),
            "team" => PreferenceSubject::Team(id),
            other => return Err(corrupt(WHAT, format_args!("subject type {other:?}"))),
        },
        channels: serde_json::from_value(channels).map_err(|e| corrupt(WHAT, e))?,
        email: email
            .map(|v| parse(&v, WHAT, str::parse::<EmailAddress>))
            .transpose()?,
        phone: phone
            .map(|v| parse(&v, WHAT, str::parse::<PhoneNumber>))
            .transpose()?,
        slack_webhook: slack
            .map(|v| parse(&v, WHAT, str::parse::<WebhookUrl>))
            .transpose()?,
        mute_non_critical: col(row, "mute_non_critical", WHAT)?,
        quiet_hours: col::<Option<serde_json::Value>>(row, "quiet_hours", WHAT)?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt(WHAT, e))?,
        members: serde_json::from_value(col(row, "members", WHAT)?)
            .map_err(|e| corrupt(WHAT, e))?,
        updated_at: col(row, "updated_at", WHAT)?,
    })
}

#[async_trait]
impl PreferenceStore for PgStore {
    async fn preferences(
        &self,
        subject: &PreferenceSubject,
    ) -> Result<Option<NotificationPreferences>> {
        let (kind, id) = subject_key(subject);
        let row = sqlx::query(
            "SELECT subject_type, subject_id, channels, email, phone, slack_webhook, \
                 mute_non_critical, quiet_hours, members, updated_at \
             FROM notification_preferences WHERE subject_type = $1 AND subject_id = $2",
        )
        .bind(kind)
        .bind(id)
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?;
        row.as_ref().map(preferences_from_row).transpose()
    }

    async fn put_preferences(&self, p: &NotificationPreferences) -> Result<()> {
        let (kind, id) = subject_key(&p.subject);
        let channels = serde_json::to_value(&p.channels)
            .map_err(|e| Error::Internal(format!("preferences do not serialize: {e}")))?;
        sqlx::query(
            "INSERT INTO notification_preferences (subject_type, subject_id, channels, email, \
                 phone, slack_webhook, mute_non_critical, updated_at, quiet_hours, members) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (subject_type, subject_id) DO UPDATE SET \
                 channels = EXCLUDED.channels, email = EXCLUDED.email, phone = EXCLUDED.phone, \
                 slack_webhook = EXCLUDED.slack_webhook, \
                 mute_non_critical = EXCLUDED.mute_non_critical, \
                 updated_at = EXCLUDED.updated_at, quiet_hours = EXCLUDED.quiet_hours, \
                 members = EXCLUDED.members",
        )
        .bind(kind)
        .bind(id)
        .bind(channels)
        .bind(p.email.as_ref().map(|e| e.as_str()))
        .bind(p.phone.as_ref().map(|v| v.as_str()))
        .bind(p.slack_webhook.as_ref().map(|v| v.as_str()))
        .bind(p.mute_non_critical)
        .bind(p.updated_at)
        .bind(
            p.quiet_hours
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(|e| Error::Internal(format!("quiet hours do not serialize: {e}")))?,
        )
        .bind(
            serde_json::to_value(&p.members)
                .map_err(|e| Error::Internal(format!("members do not serialize: {e}")))?,
        )
        .execute(self.pool_ref())
        .await
        .map_err(pg_error)?;
        Ok(())
    }
}
