//! `AlertConfigStore` (configurations with an audit row written in the same transaction as
//! every change) and `AlertHistoryStore` (fired alerts; the database enforces one
//! unresolved alert per configuration with a partial unique index).

use std::collections::{HashMap, HashSet};

use analytics_core::alert::import::ConfigImport;
use analytics_core::alert::{
    Alert, AlertConfig, AlertConfigSpec, AlertStatus, AuditAction, AuditEntry, NewAlert,
    NotificationRecord, Severity,
};
use analytics_core::error::{Error, Result};
use analytics_core::notification::Channel;
use analytics_core::ports::{
    AlertConfigStore, AlertFilter, AlertHistoryStore, AlertStepApplied, AlertStepCommit,
    AlertWrite, OpenOutcome, alert_cursor,
};
use analytics_core::time::truncate_to_micros;
use analytics_core::{MetricName, Page, PageRequest, ProjectId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::PgStore;
use crate::error::{corrupt, foreign_key_as, pg_error};
use crate::jobs::put_job_state;
use crate::notifications::insert_outbox;
use crate::sql::{col, parse, push_page, to_i64, to_u64};

const CONFIG_COLUMNS: &str = "id, spec, version, created_at, updated_at";

fn config_from_row(row: &PgRow) -> Result<AlertConfig> {
    const WHAT: &str = "alert config";
    let spec: serde_json::Value = col(row, "spec", WHAT)?;
    Ok(AlertConfig {
        id: col(row, "id", WHAT)?,
        spec: serde_json::from_value(spec).map_err(|e| corrupt(WHAT, e))?,
        version: to_u64(col(row, "version", WHAT)?, WHAT)?,
        created_at: col(row, "created_at", WHAT)?,
        updated_at: col(row, "updated_at", WHAT)?,
    })
}

fn audit_from_row(row: &PgRow) -> Result<AuditEntry> {
    const WHAT: &str = "alert config audit";
    let action: String = col(row, "action", WHAT)?;
    Ok(AuditEntry {
        id: col(row, "id", WHAT)?,
        config_id: col(row, "config_id", WHAT)?,
        action: match action.as_str() {
            "created" => AuditAction::Created,
            "updated" => AuditAction::Updated,
            "deleted" => AuditAction::Deleted,
            "imported" => AuditAction::Imported,
            other => return Err(corrupt(WHAT, format_args!("action {other:?}"))),
        },
        actor: col(row, "actor", WHAT)?,
        at: col(row, "at", WHAT)?,
        before: col(row, "before", WHAT)?,
        after: col(row, "after", WHAT)?,
    })
}

fn to_json(config: &AlertConfig) -> Result<serde_json::Value> {
    serde_json::to_value(config)
        .map_err(|e| Error::Internal(format!("alert config does not serialize: {e}")))
}

async fn write_audit(
    conn: &mut PgConnection,
    config_id: Uuid,
    action: AuditAction,
    actor: &str,
    at: DateTime<Utc>,
    before: Option<&AlertConfig>,
    after: Option<&AlertConfig>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO alert_config_audit (id, config_id, action, actor, at, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::new_v4())
    .bind(config_id)
    .bind(action.as_str())
    .bind(actor)
    .bind(at)
    .bind(before.map(to_json).transpose()?)
    .bind(after.map(to_json).transpose()?)
    .execute(conn)
    .await
    .map_err(pg_error)?;
    Ok(())
}

fn spec_json(spec: &AlertConfigSpec) -> Result<serde_json::Value> {
    serde_json::to_value(spec)
        .map_err(|e| Error::Internal(format!("alert config spec does not serialize: {e}")))
}

/// Creates a configuration inside the caller's transaction, audited as `action`.
async fn create_in(
    conn: &mut PgConnection,
    id: Uuid,
    spec: &AlertConfigSpec,
    action: AuditAction,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<AlertConfig> {
    let at = truncate_to_micros(at);
    let config = AlertConfig::created(id, spec, at);
    sqlx::query(
        "INSERT INTO alert_configs \
             (id, project, name, enabled, spec, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
    )
    .bind(id)
    .bind(spec.project.as_str())
    .bind(&spec.name)
    .bind(spec.enabled)
    .bind(spec_json(spec)?)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(pg_error)?;
    write_audit(&mut *conn, id, action, actor, at, None, Some(&config)).await?;
    Ok(config)
}

/// Replaces a configuration inside the caller's transaction, audited as `action`.
async fn update_in(
    conn: &mut PgConnection,
    id: Uuid,
    spec: &AlertConfigSpec,
    expected_version: Option<u64>,
    action: AuditAction,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<AlertConfig> {
    let at = truncate_to_micros(at);
    let row = sqlx::query(
        "SELECT id, spec, version, created_at, updated_at FROM alert_configs \
         WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(pg_error)?
    .ok_or_else(|| Error::not_found(format!("alert config {id}")))?;
    let before = config_from_row(&row)?;
    let after = before.updated(spec, expected_version, at)?;
    sqlx::query(
        "UPDATE alert_configs SET project = $2, name = $3, enabled = $4, spec = $5, \
             version = $6, updated_at = $7 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(spec.project.as_str())
    .bind(&spec.name)
    .bind(spec.enabled)
    .bind(spec_json(spec)?)
    .bind(to_i64(after.version))
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(pg_error)?;
    write_audit(
        &mut *conn,
        id,
        action,
        actor,
        at,
        Some(&before),
        Some(&after),
    )
    .await?;
    Ok(after)
}

#[async_trait]
impl AlertConfigStore for PgStore {
    async fn create_config(
        &self,
        id: Uuid,
        spec: &AlertConfigSpec,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig> {
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        let config = create_in(&mut tx, id, spec, AuditAction::Created, actor, at).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(config)
    }

    async fn update_config(
        &self,
        id: Uuid,
        spec: &AlertConfigSpec,
        expected_version: Option<u64>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig> {
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        let after = update_in(
            &mut tx,
            id,
            spec,
            expected_version,
            AuditAction::Updated,
            actor,
            at,
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(after)
    }

    async fn import_configs(
        &self,
        writes: &[ConfigImport],
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<AlertConfig>> {
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        let mut done = Vec::with_capacity(writes.len());
        for w in writes {
            done.push(match w.replaces {
                None => create_in(&mut tx, w.id, &w.spec, AuditAction::Imported, actor, at).await?,
                Some(v) => {
                    update_in(
                        &mut tx,
                        w.id,
                        &w.spec,
                        Some(v),
                        AuditAction::Imported,
                        actor,
                        at,
                    )
                    .await?
                }
            });
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(done)
    }

    async fn delete_config(&self, id: Uuid, actor: &str, at: DateTime<Utc>) -> Result<()> {
        let at = truncate_to_micros(at);
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        let row = sqlx::query(
            "DELETE FROM alert_configs WHERE id = $1 \
             RETURNING id, spec, version, created_at, updated_at",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_error)?
        .ok_or_else(|| Error::not_found(format!("alert config {id}")))?;
        let before = config_from_row(&row)?;
        write_audit(
            &mut tx,
            id,
            AuditAction::Deleted,
            actor,
            at,
            Some(&before),
            None,
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(())
    }

    async fn get_config(&self, id: Uuid) -> Result<AlertConfig> {
        let row = sqlx::query(
            "SELECT id, spec, version, created_at, updated_at FROM alert_configs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?
        .ok_or_else(|| Error::not_found(format!("alert config {id}")))?;
        config_from_row(&row)
    }

    async fn list_configs(
        &self,
        project: Option<&ProjectId>,
        enabled_only: bool,
    ) -> Result<Vec<AlertConfig>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {CONFIG_COLUMNS} FROM alert_configs WHERE TRUE"
        ));
        if let Some(p) = project {
            q.push(" AND project = ").push_bind(p.as_str().to_owned());
        }
        if enabled_only {
            q.push(" AND enabled");
        }
        q.push(" ORDER BY created_at, id");
        let rows = q
            .build()
            .fetch_all(self.pool_ref())
            .await
            .map_err(pg_error)?;
        rows.iter().map(config_from_row).collect()
    }

    async fn config_audit(&self, config_id: Uuid) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, config_id, action, actor, at, before, after FROM alert_config_audit \
             WHERE config_id = $1 ORDER BY seq",
        )
        .bind(config_id)
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        rows.iter().map(audit_from_row).collect()
    }
}

const ALERT_COLUMNS: &str = "id, config_id, project, metric, severity, triggered_at, value, \
    threshold, message, status, acknowledged_by, acknowledged_at, acknowledgement_note, \
    resolved_by, resolved_at";

/// An alert row without its notification records.
fn alert_from_row(row: &PgRow) -> Result<Alert> {
    const WHAT: &str = "alert";
    let project: String = col(row, "project", WHAT)?;
    let metric: String = col(row, "metric", WHAT)?;
    let severity: String = col(row, "severity", WHAT)?;
    let status: String = col(row, "status", WHAT)?;
    Ok(Alert {
        fired: NewAlert {
            id: col(row, "id", WHAT)?,
            config_id: col(row, "config_id", WHAT)?,
            project: parse(&project, WHAT, str::parse::<ProjectId>)?,
            metric: parse(&metric, WHAT, str::parse::<MetricName>)?,
            severity: parse(&severity, WHAT, str::parse::<Severity>)?,
            triggered_at: col(row, "triggered_at", WHAT)?,
            value: col(row, "value", WHAT)?,
            threshold: col(row, "threshold", WHAT)?,
            message: col(row, "message", WHAT)?,
        },
        status: parse(&status, WHAT, str::parse::<AlertStatus>)?,
        acknowledged_by: col(row, "acknowledged_by", WHAT)?,
        acknowledged_at: col(row, "acknowledged_at", WHAT)?,
        acknowledgement_note: col(row, "acknowledgement_note", WHAT)?,
        resolved_by: col(row, "resolved_by", WHAT)?,
        resolved_at: col(row, "resolved_at", WHAT)?,
        notifications: Vec::new(),
    })
}

fn record_from_row(row: &PgRow) -> Result<(Uuid, NotificationRecord)> {
    const WHAT: &str = "alert notification";
    let channel: String = col(row, "channel", WHAT)?;
    let attempts: i64 = col(row, "attempts", WHAT)?;
    let latency: Option<i64> = col(row, "latency_ms", WHAT)?;
    Ok((
        col(row, "alert_id", WHAT)?,
        NotificationRecord {
            channel: parse(&channel, WHAT, str::parse::<Channel>)?,
            recipient: col(row, "recipient", WHAT)?,
            outcome: col(row, "outcome", WHAT)?,
            attempts: u32::try_from(attempts)
                .map_err(|_| corrupt(WHAT, format_args!("attempts {attempts}")))?,
            latency_ms: latency.map(|l| to_u64(l, WHAT)).transpose()?,
            at: col(row, "at", WHAT)?,
        },
    ))
}

impl PgStore {
    /// Fills in the notification records of `alerts` (one query for all of them).
    async fn with_records(&self, mut alerts: Vec<Alert>) -> Result<Vec<Alert>> {
        if alerts.is_empty() {
            return Ok(alerts);
        }
        let ids: Vec<Uuid> = alerts.iter().map(Alert::id).collect();
        let rows = sqlx::query(
            "SELECT alert_id, channel, recipient, outcome, attempts, latency_ms, at \
             FROM alert_notifications WHERE alert_id = ANY($1) ORDER BY alert_id, seq",
        )
        .bind(ids)
        .fetch_all(self.pool_ref())
        .await
        .map_err(pg_error)?;
        let mut by_alert: HashMap<Uuid, Vec<NotificationRecord>> = HashMap::new();
        for row in &rows {
            let (id, record) = record_from_row(row)?;
            by_alert.entry(id).or_default().push(record);
        }
        for a in &mut alerts {
            a.notifications = by_alert.remove(&a.id()).unwrap_or_default();
        }
        Ok(alerts)
    }

    async fn alert_by_id(&self, id: Uuid) -> Result<Option<Alert>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alert_history WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool_ref())
        .await
        .map_err(pg_error)?;
        match row {
            Some(row) => Ok(self.with_records(vec![alert_from_row(&row)?]).await?.pop()),
            None => Ok(None),
        }
    }

    /// Applies a lifecycle change (core's own `Alert` methods, so the rules are the same
    /// as everywhere) under a row lock and stores the result.
    async fn change_alert(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Alert) -> Result<()> + Send,
    ) -> Result<Alert> {
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alert_history WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_error)?
        .ok_or_else(|| Error::not_found(format!("alert {id}")))?;
        let mut alert = alert_from_row(&row)?;
        change(&mut alert)?;
        sqlx::query(
            "UPDATE alert_history SET status = $2, acknowledged_by = $3, acknowledged_at = $4, \
                 resolved_by = $5, resolved_at = $6, acknowledgement_note = $7 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(alert.status.as_str())
        .bind(&alert.acknowledged_by)
        .bind(alert.acknowledged_at)
        .bind(&alert.resolved_by)
        .bind(alert.resolved_at)
        .bind(&alert.acknowledgement_note)
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        self.with_records(vec![alert])
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("an alert was lost while reading it back".into()))
    }
}

/// How an open inside a step went.
enum Opened {
    /// Inserted.
    New,
    /// This very alert exists already (the step is a replay).
    Replayed,
    /// The configuration has another unresolved alert.
    Refused,
}

/// Opens an alert inside the caller's transaction; the partial unique index on unresolved
/// alerts per configuration refuses a second one.
async fn open_in(conn: &mut PgConnection, alert: &NewAlert) -> Result<Opened> {
    let inserted = sqlx::query(
        "INSERT INTO alert_history (id, config_id, project, metric, severity, triggered_at, \
             value, threshold, message, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active') \
         ON CONFLICT DO NOTHING",
    )
    .bind(alert.id)
    .bind(alert.config_id)
    .bind(alert.project.as_str())
    .bind(alert.metric.as_str())
    .bind(alert.severity.as_str())
    .bind(alert.triggered_at)
    .bind(alert.value)
    .bind(alert.threshold)
    .bind(&alert.message)
    .execute(&mut *conn)
    .await
    .map_err(pg_error)?
    .rows_affected();
    if inserted > 0 {
        return Ok(Opened::New);
    }
    let same: Option<i32> = sqlx::query_scalar("SELECT 1 FROM alert_history WHERE id = $1")
        .bind(alert.id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(pg_error)?;
    Ok(if same.is_some() {
        Opened::Replayed
    } else {
        Opened::Refused
    })
}

#[async_trait]
impl AlertHistoryStore for PgStore {
    async fn open_alert(&self, alert: &NewAlert) -> Result<OpenOutcome> {
        // Three rounds cover a race with a concurrent resolve between the refused insert
        // and the look-up of the alert that refused it.
        for _ in 0..3 {
            let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO alert_history (id, config_id, project, metric, severity, \
                     triggered_at, value, threshold, message, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active') \
                 ON CONFLICT DO NOTHING \
                 RETURNING {ALERT_COLUMNS}"
            )))
            .bind(alert.id)
            .bind(alert.config_id)
            .bind(alert.project.as_str())
            .bind(alert.metric.as_str())
            .bind(alert.severity.as_str())
            .bind(alert.triggered_at)
            .bind(alert.value)
            .bind(alert.threshold)
            .bind(&alert.message)
            .fetch_optional(self.pool_ref())
            .await
            .map_err(pg_error)?;
            if let Some(row) = inserted {
                return Ok(OpenOutcome::Opened(alert_from_row(&row)?));
            }
            if let Some(same) = self.alert_by_id(alert.id).await? {
                return Ok(OpenOutcome::AlreadyOpen(same));
            }
            let open = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {ALERT_COLUMNS} FROM alert_history \
                 WHERE config_id = $1 AND status <> 'resolved'"
            )))
            .bind(alert.config_id)
            .fetch_optional(self.pool_ref())
            .await
            .map_err(pg_error)?;
            if let Some(row) = open {
                let open = self.with_records(vec![alert_from_row(&row)?]).await?;
                if let Some(a) = open.into_iter().next() {
                    return Ok(OpenOutcome::AlreadyOpen(a));
                }
            }
        }
        Err(Error::Unavailable(format!(
            "alert config {} changed state while opening an alert; retry",
            alert.config_id
        )))
    }

    async fn get_alert(&self, id: Uuid) -> Result<Alert> {
        self.alert_by_id(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("alert {id}")))
    }

    async fn list_alerts(&self, filter: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT {ALERT_COLUMNS} FROM alert_history WHERE TRUE"
        ));
        if let Some(p) = &filter.project {
            q.push(" AND project = ").push_bind(p.as_str().to_owned());
        }
        if let Some(c) = filter.config_id {
            q.push(" AND config_id = ").push_bind(c);
        }
        if !filter.statuses.is_empty() {
            let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
            q.push(" AND status = ANY(").push_bind(statuses).push(")");
        }
        if let Some(s) = filter.severity {
            q.push(" AND severity = ").push_bind(s.as_str());
        }
        if let Some(m) = &filter.metric {
            q.push(" AND metric = ").push_bind(m.as_str().to_owned());
        }
        if let Some(r) = &filter.range {
            q.push(" AND triggered_at >= ").push_bind(r.start());
            q.push(" AND triggered_at < ").push_bind(r.end());
        }
        push_page(&mut q, "triggered_at", page);
        let rows = q
            .build()
            .fetch_all(self.pool_ref())
            .await
            .map_err(pg_error)?;
        let alerts = rows
            .iter()
            .map(alert_from_row)
            .collect::<Result<Vec<_>>>()?;
        let alerts = self.with_records(alerts).await?;
        Ok(Page::from_overfetch(alerts, page, alert_cursor))
    }

    async fn acknowledge_alert(
        &self,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<Alert> {
        let at = truncate_to_micros(at);
        self.change_alert(id, |a| a.acknowledge(by, at, note)).await
    }

    async fn resolve_alert(&self, id: Uuid, by: &str, at: DateTime<Utc>) -> Result<Alert> {
        let at = truncate_to_micros(at);
        self.change_alert(id, |a| {
            a.resolve(by, at);
            Ok(())
        })
        .await
    }

    async fn last_fired(&self, config_id: Uuid) -> Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT max(triggered_at) FROM alert_history WHERE config_id = $1")
            .bind(config_id)
            .fetch_one(self.pool_ref())
            .await
            .map_err(pg_error)
    }

    async fn record_notification(&self, alert_id: Uuid, record: &NotificationRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO alert_notifications \
                 (alert_id, channel, recipient, outcome, attempts, latency_ms, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(alert_id)
        .bind(record.channel.as_str())
        .bind(&record.recipient)
        .bind(&record.outcome)
        .bind(i64::from(record.attempts))
        .bind(record.latency_ms.map(to_i64))
        .bind(record.at)
        .execute(self.pool_ref())
        .await
        .map_err(foreign_key_as(format!("alert {alert_id}")))?;
        Ok(())
    }

    async fn commit_alert_step(&self, step: &AlertStepCommit) -> Result<AlertStepApplied> {
        let mut tx = self.pool_ref().begin().await.map_err(pg_error)?;
        let mut applied = AlertStepApplied::default();
        let mut skipped = HashSet::new();
        for w in &step.writes {
            match w {
                AlertWrite::Open(alert) => match open_in(&mut tx, alert).await? {
                    Opened::New => applied.opened.push(alert.id),
                    Opened::Replayed => {}
                    Opened::Refused => {
                        skipped.insert(alert.id);
                    }
                },
                AlertWrite::Resolve { alert_id, by, at } => {
                    let changed = sqlx::query(
                        "UPDATE alert_history SET status = 'resolved', resolved_by = $2, \
                         resolved_at = $3 WHERE id = $1 AND status <> 'resolved'",
                    )
                    .bind(alert_id)
                    .bind(by)
                    .bind(truncate_to_micros(*at))
                    .execute(&mut *tx)
                    .await
                    .map_err(pg_error)?
                    .rows_affected();
                    if changed > 0 {
                        applied.resolved.push(*alert_id);
                    }
                }
                AlertWrite::Enqueue(notifications) => {
                    let kept = AlertWrite::kept(notifications, &skipped);
                    applied.enqueued += insert_outbox(&mut *tx, &kept, step.at).await?;
                }
            }
        }
        put_job_state(&mut tx, &step.job, step.at, &step.state).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(applied)
    }
}
