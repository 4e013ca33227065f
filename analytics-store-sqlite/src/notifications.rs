//! `NotificationOutbox`, `InAppStore` and `PreferenceStore` on SQLite: the delivery queue
//! with leases and attempts, per-user in-app notifications, and per-subject preferences.

use analytics_core::alert::Severity;
use analytics_core::notification::{
    AttemptOutcome, DeliveryAttempt, InAppNotification, Notification, NotificationPreferences,
    OutboxEntry, PreferenceSubject,
};
use analytics_core::ports::{InAppStore, NotificationOutbox, PreferenceStore, in_app_cursor};
use analytics_core::{Error, Page, PageRequest, Result, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use crate::codec::{
    get, get_json, get_opt_time, get_parsed, get_time, get_u32, get_u64, json, micros,
    placeholders, to_i64,
};
use crate::error::{DbResultExt, corrupt};
use crate::sql::{Arg, Where, query_with};
use crate::store::SqliteStore;

/// Claim order: critical first.
fn severity_rank(s: Severity) -> i64 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

const SELECT_ENTRY: &str = "SELECT id, alert_id, severity, title, body, link, channel, \
     recipient, status, attempts, next_attempt_at, last_error, created_at, sent_at \
     FROM notification_outbox";

fn decode_entry(row: &SqliteRow) -> Result<OutboxEntry> {
    const W: &str = "outbox";
    Ok(OutboxEntry {
        notification: Notification {
            id: get(row, W, "id")?,
            alert_id: get(row, W, "alert_id")?,
            severity: get_parsed(row, W, "severity")?,
            title: get(row, W, "title")?,
            body: get(row, W, "body")?,
            link: get(row, W, "link")?,
            channel: get_parsed(row, W, "channel")?,
            recipient: get_json(row, W, "recipient")?,
        },
        status: get_parsed(row, W, "status")?,
        attempts: get_u32(row, W, "attempts")?,
        next_attempt_at: get_time(row, W, "next_attempt_at")?,
        last_error: get(row, W, "last_error")?,
        created_at: get_time(row, W, "created_at")?,
        sent_at: get_opt_time(row, W, "sent_at")?,
    })
}

async fn load_entry(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
) -> Result<Option<OutboxEntry>> {
    let sql = format!("{SELECT_ENTRY} WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .db("read outbox entry")?;
    row.as_ref().map(decode_entry).transpose()
}

fn decode_attempt(row: &SqliteRow) -> Result<DeliveryAttempt> {
    const W: &str = "delivery attempt";
    let outcome: String = get(row, W, "outcome")?;
    let outcome = match outcome.as_str() {
        "delivered" => AttemptOutcome::Delivered {
            provider_id: get(row, W, "provider_id")?,
        },
        "failed" => AttemptOutcome::Failed {
            error: get::<Option<String>>(row, W, "error")?.unwrap_or_default(),
            retry_at: get_opt_time(row, W, "retry_at")?,
        },
        other => return Err(corrupt(W, format!("outcome {other:?}"))),
    };
    Ok(DeliveryAttempt {
        at: get_time(row, W, "at")?,
        outcome,
        duration_ms: get_u64(row, W, "duration_ms")?,
    })
}

/// Writes notifications into the outbox, due at `at`, inside the caller's transaction;
/// returns how many were new (the id is the idempotency key).
pub(crate) async fn insert_outbox(
    tx: &mut Transaction<'static, Sqlite>,
    notifications: &[Notification],
    at: DateTime<Utc>,
) -> Result<u64> {
    let mut new = 0;
    for n in notifications {
        new += sqlx::query(
            "INSERT INTO notification_outbox (id, alert_id, severity, severity_rank, title, \
             body, link, channel, recipient, status, attempts, next_attempt_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(n.id)
        .bind(n.alert_id)
        .bind(n.severity.as_str())
        .bind(severity_rank(n.severity))
        .bind(&n.title)
        .bind(&n.body)
        .bind(n.link.as_deref())
        .bind(n.channel.as_str())
        .bind(json("recipient", &n.recipient)?)
        .bind(micros(at))
        .bind(micros(at))
        .execute(&mut **tx)
        .await
        .db("enqueue notification")?
        .rows_affected();
    }
    Ok(new)
}

#[async_trait]
impl NotificationOutbox for SqliteStore {
    async fn enqueue(&self, notifications: &[Notification], at: DateTime<Utc>) -> Result<u64> {
        if notifications.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write("enqueue notifications").await?;
        let new = insert_outbox(&mut tx, notifications, at).await?;
        self.commit(tx, "commit enqueue").await?;
        Ok(new)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let until = now
            .checked_add_signed(lease)
            .ok_or_else(|| Error::invalid("lease", "is out of range"))?;
        // The write lock is taken first (BEGIN IMMEDIATE), so two claimers cannot read the
        // same due entries: the second sees the first one's lease.
        let mut tx = self.begin_write("claim notifications").await?;
        let sql = format!(
            "{SELECT_ENTRY} WHERE status = 'pending' AND next_attempt_at <= ? \
             ORDER BY severity_rank DESC, next_attempt_at, created_at, id LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(micros(now))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .db("claim notifications")?;
        let mut entries = rows.iter().map(decode_entry).collect::<Result<Vec<_>>>()?;
        for chunk in entries.chunks(500) {
            let sql = format!(
                "UPDATE notification_outbox SET next_attempt_at = ? WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(micros(until));
            for e in chunk {
                q = q.bind(e.notification.id);
            }
            q.execute(&mut *tx).await.db("lease notifications")?;
        }
        self.commit(tx, "commit claim").await?;
        for e in &mut entries {
            e.next_attempt_at = until;
        }
        Ok(entries)
    }

    async fn record_attempt(&self, id: Uuid, attempt: &DeliveryAttempt) -> Result<OutboxEntry> {
        let mut tx = self.begin_write("record delivery attempt").await?;
        let mut entry = load_entry(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("outbox entry {id}")))?;
        entry.record(attempt);
        let (outcome, provider_id, error, retry_at) = match &attempt.outcome {
            AttemptOutcome::Delivered { provider_id } => {
                ("delivered", provider_id.as_deref(), None, None)
            }
            AttemptOutcome::Failed { error, retry_at } => {
                ("failed", None, Some(error.as_str()), *retry_at)
            }
        };
        sqlx::query(
            "UPDATE notification_outbox SET status = ?, attempts = ?, next_attempt_at = ?, \
             last_error = ?, sent_at = ? WHERE id = ?",
        )
        .bind(entry.status.as_str())
        .bind(i64::from(entry.attempts))
        .bind(micros(entry.next_attempt_at))
        .bind(entry.last_error.as_deref())
        .bind(entry.sent_at.map(micros))
        .bind(id)
        .execute(&mut *tx)
        .await
        .db("update outbox entry")?;
        sqlx::query(
            "INSERT INTO notification_attempts (notification_id, at, outcome, provider_id, error, \
             retry_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(micros(attempt.at))
        .bind(outcome)
        .bind(provider_id)
        .bind(error)
        .bind(retry_at.map(micros))
        .bind(to_i64("duration_ms", attempt.duration_ms)?)
        .execute(&mut *tx)
        .await
        .db("record delivery attempt")?;
        self.commit(tx, "commit delivery attempt").await?;
        Ok(entry)
    }

    async fn outbox_entry(&self, id: Uuid) -> Result<OutboxEntry> {
        let sql = format!("{SELECT_ENTRY} WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .db("read outbox entry")?;
        row.as_ref()
            .map(decode_entry)
            .transpose()?
            .ok_or_else(|| Error::not_found(format!("outbox entry {id}")))
    }

    async fn delivery_attempts(&self, id: Uuid) -> Result<Vec<DeliveryAttempt>> {
        let rows = sqlx::query(
            "SELECT at, outcome, provider_id, error, retry_at, duration_ms \
             FROM notification_attempts WHERE notification_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await
        .db("read delivery attempts")?;
        rows.iter().map(decode_attempt).collect()
    }

    async fn alert_outbox_entries(&self, alert_id: Uuid) -> Result<Vec<OutboxEntry>> {
        let sql = format!("{SELECT_ENTRY} WHERE alert_id = ? ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(alert_id)
            .fetch_all(self.reader())
            .await
            .db("read alert outbox entries")?;
        rows.iter().map(decode_entry).collect()
    }
}

fn decode_in_app(row: &SqliteRow) -> Result<InAppNotification> {
    const W: &str = "in-app notification";
    Ok(InAppNotification {
        id: get(row, W, "id")?,
        user: UserId::parse(get::<String>(row, W, "user_id")?).map_err(|e| corrupt(W, e))?,
        alert_id: get(row, W, "alert_id")?,
        severity: get_parsed(row, W, "severity")?,
        title: get(row, W, "title")?,
        body: get(row, W, "body")?,
        created_at: get_time(row, W, "created_at")?,
        read_at: get_opt_time(row, W, "read_at")?,
    })
}

#[async_trait]
impl InAppStore for SqliteStore {
    async fn create_in_app(&self, n: &InAppNotification) -> Result<bool> {
        let mut tx = self.begin_write("create in-app notification").await?;
        let inserted = sqlx::query(
            "INSERT INTO in_app_notifications (id, user_id, alert_id, severity, title, body, \
             created_at, read_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(n.id)
        .bind(n.user.as_str())
        .bind(n.alert_id)
        .bind(n.severity.as_str())
        .bind(&n.title)
        .bind(&n.body)
        .bind(micros(n.created_at))
        .bind(n.read_at.map(micros))
        .execute(&mut *tx)
        .await
        .db("create in-app notification")?
        .rows_affected();
        self.commit(tx, "commit in-app notification").await?;
        Ok(inserted == 1)
    }

    async fn list_in_app(
        &self,
        user: &UserId,
        unread_only: bool,
        page: &PageRequest,
    ) -> Result<Page<InAppNotification>> {
        let mut w = Where::default();
        w.and("user_id = ?", [Arg::Text(user.as_str().to_owned())]);
        if unread_only {
            w.and("read_at IS NULL", []);
        }
        w.before("created_at", page.cursor);
        let sql = format!(
            "SELECT id, user_id, alert_id, severity, title, body, created_at, read_at \
             FROM in_app_notifications{} ORDER BY created_at DESC, id DESC LIMIT ?",
            w.sql()
        );
        let args = w.page_arguments(page)?;
        let rows = query_with(sql, args)
            .fetch_all(self.reader())
            .await
            .db("list in-app notifications")?;
        let items = rows.iter().map(decode_in_app).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page, in_app_cursor))
    }

    async fn get_in_app(&self, user: &UserId, id: Uuid) -> Result<Option<InAppNotification>> {
        let row = sqlx::query(
            "SELECT id, user_id, alert_id, severity, title, body, created_at, read_at \
             FROM in_app_notifications WHERE user_id = ? AND id = ?",
        )
        .bind(user.as_str())
        .bind(id)
        .fetch_optional(self.reader())
        .await
        .db("read an in-app notification")?;
        row.as_ref().map(decode_in_app).transpose()
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
        let mut tx = self.begin_write("mark in-app read").await?;
        let mut changed = 0;
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE in_app_notifications SET read_at = ? \
                 WHERE user_id = ? AND read_at IS NULL AND id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(micros(at))
                .bind(user.as_str());
            for id in chunk {
                q = q.bind(*id);
            }
            changed += q
                .execute(&mut *tx)
                .await
                .db("mark in-app read")?
                .rows_affected();
        }
        self.commit(tx, "commit mark in-app read").await?;
        Ok(changed)
    }

    async fn unread_in_app(&self, user: &UserId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM in_app_notifications WHERE user_id = ? AND read_at IS NULL",
        )
        .bind(user.as_str())
        .fetch_one(self.reader())
        .await
        .db("count unread in-app notifications")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

fn subject_key(subject: &PreferenceSubject) -> (&'static str, &str) {
    match subject {
        PreferenceSubject::User(u) => ("user", u.as_str()),
        PreferenceSubject::Team(t) => ("team", t.as_str()),
    }
}

fn decode_preferences(
    row: &SqliteRow,
    subject: &PreferenceSubject,
) -> Result<NotificationPreferences> {
    const W: &str = "preferences";
    let parse_opt = |col: &str| -> Result<Option<String>> { get(row, W, col) };
    Ok(NotificationPreferences {
        subject: subject.clone(),
        channels: get_json(row, W, "channels")?,
        email: parse_opt("email")?
            .map(|s| s.parse().map_err(|e| corrupt(W, e)))
            .transpose()?,
        phone: parse_opt("phone")?
            .map(|s| s.parse().map_err(|e| corrupt(W, e)))
            .transpose()?,
        slack_webhook: parse_opt("slack_webhook")?
            .map(|s| s.parse().map_err(|e| corrupt(W, e)))
            .transpose()?,
        mute_non_critical: get(row, W, "mute_non_critical")?,
        quiet_hours: get_json(row, W, "quiet_hours")?,
        members: get_json(row, W, "members")?,
        updated_at: get_time(row, W, "updated_at")?,
    })
}

#[async_trait]
impl PreferenceStore for SqliteStore {
    async fn preferences(
        &self,
        subject: &PreferenceSubject,
    ) -> Result<Option<NotificationPreferences>> {
        let (kind, id) = subject_key(subject);
        let row = sqlx::query(
            "SELECT channels, email, phone, slack_webhook, mute_non_critical, quiet_hours, \
             members, updated_at FROM notification_preferences WHERE subject_type = ? AND subject_id = ?",
        )
        .bind(kind)
        .bind(id)
        .fetch_optional(self.reader())
        .await
        .db("read preferences")?;
        row.map(|r| decode_preferences(&r, subject)).transpose()
    }

    async fn put_preferences(&self, p: &NotificationPreferences) -> Result<()> {
        let (kind, id) = subject_key(&p.subject);
        let mut tx = self.begin_write("put preferences").await?;
        sqlx::query(
            "INSERT INTO notification_preferences (subject_type, subject_id, channels, email, \
             phone, slack_webhook, mute_non_critical, updated_at, quiet_hours, members) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (subject_type, subject_id) DO UPDATE SET channels = excluded.channels, \
             email = excluded.email, phone = excluded.phone, \
             slack_webhook = excluded.slack_webhook, \
             mute_non_critical = excluded.mute_non_critical, updated_at = excluded.updated_at, \
             quiet_hours = excluded.quiet_hours, members = excluded.members",
        )
        .bind(kind)
        .bind(id)
        .bind(json("channels", &p.channels)?)
        .bind(p.email.as_ref().map(|e| e.as_str()))
        .bind(p.phone.as_ref().map(|e| e.as_str()))
        .bind(p.slack_webhook.as_ref().map(|e| e.as_str()))
        .bind(p.mute_non_critical)
        .bind(micros(p.updated_at))
        .bind(json("quiet hours", &p.quiet_hours)?)
        .bind(json("members", &p.members)?)
        .execute(&mut *tx)
        .await
        .db("put preferences")?;
        self.commit(tx, "commit preferences").await?;
        Ok(())
    }
}
