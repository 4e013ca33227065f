//! `AlertConfigStore` and `AlertHistoryStore` on SQLite: versioned, audited configurations
//! and the alert lifecycle, with "one unresolved alert per configuration" enforced by a
//! partial unique index.

use std::collections::{HashMap, HashSet};

use analytics_core::alert::import::ConfigImport;
use analytics_core::alert::{
    Alert, AlertConfig, AlertConfigSpec, AuditAction, AuditEntry, NewAlert, NoDataPolicy,
    NotificationRecord,
};
use analytics_core::ports::{
    AlertConfigStore, AlertFilter, AlertHistoryStore, AlertStepApplied, AlertStepCommit,
    AlertWrite, OpenOutcome, alert_cursor,
};
use analytics_core::rollup::Dimensions;
use analytics_core::{Error, MetricName, Page, PageRequest, ProjectId, Result, Threshold};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;

use crate::codec::{
    get, get_json, get_opt_time, get_parsed, get_time, get_u32, get_u64, json, micros,
    placeholders, to_i64,
};
use crate::error::{DbResultExt, corrupt};
use crate::jobs::put_job_state;
use crate::notifications::insert_outbox;
use crate::sql::{Arg, Where, query_with};
use crate::store::SqliteStore;

const SELECT_CONFIG: &str = "SELECT id, project, name, metric, stat, dimensions, condition, \
     threshold, window_secs, severity, cooldown_secs, channels, recipients, enabled, version, \
     created_at, updated_at, for_secs, recovery_threshold, auto_resolve, no_data \
     FROM alert_configs";

fn decode_config(row: &SqliteRow) -> Result<AlertConfig> {
    const W: &str = "alert config";
    let dims: String = get(row, W, "dimensions")?;
    let spec = AlertConfigSpec {
        project: ProjectId::parse(get::<String>(row, W, "project")?).map_err(|e| corrupt(W, e))?,
        name: get(row, W, "name")?,
        metric: MetricName::parse(get::<String>(row, W, "metric")?).map_err(|e| corrupt(W, e))?,
        stat: get_parsed(row, W, "stat")?,
        dimensions: Dimensions::from_canonical(&dims).map_err(|e| corrupt(W, e))?,
        condition: get_parsed(row, W, "condition")?,
        threshold: Threshold::new(get(row, W, "threshold")?).map_err(|e| corrupt(W, e))?,
        window_secs: get_u32(row, W, "window_secs")?,
        severity: get_parsed(row, W, "severity")?,
        cooldown_secs: get_u32(row, W, "cooldown_secs")?,
        channels: get_json(row, W, "channels")?,
        recipients: get_json(row, W, "recipients")?,
        enabled: get(row, W, "enabled")?,
        for_secs: get_u32(row, W, "for_secs")?,
        recovery_threshold: get::<Option<f64>>(row, W, "recovery_threshold")?
            .map(Threshold::new)
            .transpose()
            .map_err(|e| corrupt(W, e))?,
        auto_resolve: get(row, W, "auto_resolve")?,
        no_data: get_parsed::<NoDataPolicy>(row, W, "no_data")?,
    };
    Ok(AlertConfig {
        id: get(row, W, "id")?,
        spec,
        version: get_u64(row, W, "version")?,
        created_at: get_time(row, W, "created_at")?,
        updated_at: get_time(row, W, "updated_at")?,
    })
}

async fn load_config(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
) -> Result<Option<AlertConfig>> {
    let sql = format!("{SELECT_CONFIG} WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .db("read alert config")?;
    row.as_ref().map(decode_config).transpose()
}

async fn name_taken(
    tx: &mut Transaction<'static, Sqlite>,
    spec: &AlertConfigSpec,
    except: Uuid,
) -> Result<bool> {
    let taken: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM alert_configs WHERE project = ? AND name = ? AND id <> ?",
    )
    .bind(spec.project.as_str())
    .bind(&spec.name)
    .bind(except)
    .fetch_optional(&mut **tx)
    .await
    .db("check alert config name")?;
    Ok(taken.is_some())
}

/// Writes every column of `config` (insert or full replace).
async fn write_config(
    tx: &mut Transaction<'static, Sqlite>,
    config: &AlertConfig,
    insert: bool,
) -> Result<()> {
    let s = &config.spec;
    let sql = if insert {
        "INSERT INTO alert_configs (project, name, metric, stat, dimensions, condition, \
         threshold, window_secs, severity, cooldown_secs, channels, recipients, enabled, \
         version, created_at, updated_at, for_secs, recovery_threshold, auto_resolve, no_data, \
         id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    } else {
        "UPDATE alert_configs SET project = ?, name = ?, metric = ?, stat = ?, dimensions = ?, \
         condition = ?, threshold = ?, window_secs = ?, severity = ?, cooldown_secs = ?, \
         channels = ?, recipients = ?, enabled = ?, version = ?, created_at = ?, \
         updated_at = ?, for_secs = ?, recovery_threshold = ?, auto_resolve = ?, no_data = ? \
         WHERE id = ?"
    };
    sqlx::query(sql)
        .bind(s.project.as_str())
        .bind(&s.name)
        .bind(s.metric.as_str())
        .bind(s.stat.as_str())
        .bind(s.dimensions.canonical())
        .bind(s.condition.as_str())
        .bind(s.threshold.get())
        .bind(i64::from(s.window_secs))
        .bind(s.severity.as_str())
        .bind(i64::from(s.cooldown_secs))
        .bind(json("channels", &s.channels)?)
        .bind(json("recipients", &s.recipients)?)
        .bind(s.enabled)
        .bind(to_i64("version", config.version)?)
        .bind(micros(config.created_at))
        .bind(micros(config.updated_at))
        .bind(i64::from(s.for_secs))
        .bind(s.recovery_threshold.map(Threshold::get))
        .bind(s.auto_resolve)
        .bind(s.no_data.as_str())
        .bind(config.id)
        .execute(&mut **tx)
        .await
        .db("write alert config")?;
    Ok(())
}

async fn audit(
    tx: &mut Transaction<'static, Sqlite>,
    config_id: Uuid,
    action: AuditAction,
    actor: &str,
    at: DateTime<Utc>,
    before: Option<&AlertConfig>,
    after: Option<&AlertConfig>,
) -> Result<()> {
    let before = before.map(|c| json("audit before", c)).transpose()?;
    let after = after.map(|c| json("audit after", c)).transpose()?;
    sqlx::query(
        "INSERT INTO alert_config_audit (id, config_id, action, actor, at, before, after) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(Uuid::new_v4())
    .bind(config_id)
    .bind(action.as_str())
    .bind(actor)
    .bind(micros(at))
    .bind(before)
    .bind(after)
    .execute(&mut **tx)
    .await
    .db("write audit entry")?;
    Ok(())
}

fn parse_action(what: &str, s: &str) -> Result<AuditAction> {
    match s {
        "created" => Ok(AuditAction::Created),
        "updated" => Ok(AuditAction::Updated),
        "deleted" => Ok(AuditAction::Deleted),
        "imported" => Ok(AuditAction::Imported),
        other => Err(corrupt(what, format!("audit action {other:?}"))),
    }
}

/// Creates a configuration inside the caller's transaction, audited as `action`.
async fn create_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    spec: &AlertConfigSpec,
    action: AuditAction,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<AlertConfig> {
    if load_config(tx, id).await?.is_some() {
        return Err(Error::Conflict(format!("alert config {id} already exists")));
    }
    if name_taken(tx, spec, id).await? {
        return Err(spec.name_taken());
    }
    let config = AlertConfig::created(id, spec, at);
    write_config(tx, &config, true).await?;
    audit(tx, id, action, actor, at, None, Some(&config)).await?;
    Ok(config)
}

/// Replaces a configuration inside the caller's transaction, audited as `action`.
async fn update_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    spec: &AlertConfigSpec,
    expected_version: Option<u64>,
    action: AuditAction,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<AlertConfig> {
    let before = load_config(tx, id)
        .await?
        .ok_or_else(|| Error::not_found(format!("alert config {id}")))?;
    let after = before.updated(spec, expected_version, at)?;
    if name_taken(tx, spec, id).await? {
        return Err(spec.name_taken());
    }
    write_config(tx, &after, false).await?;
    audit(tx, id, action, actor, at, Some(&before), Some(&after)).await?;
    Ok(after)
}

#[async_trait]
impl AlertConfigStore for SqliteStore {
    async fn create_config(
        &self,
        id: Uuid,
        spec: &AlertConfigSpec,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig> {
        let mut tx = self.begin_write("create alert config").await?;
        let config = create_in(&mut tx, id, spec, AuditAction::Created, actor, at).await?;
        self.commit(tx, "commit alert config").await?;
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
        let mut tx = self.begin_write("update alert config").await?;
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
        self.commit(tx, "commit alert config").await?;
        Ok(after)
    }

    async fn import_configs(
        &self,
        writes: &[ConfigImport],
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<AlertConfig>> {
        let mut tx = self.begin_write("import alert configs").await?;
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
        self.commit(tx, "commit alert config import").await?;
        Ok(done)
    }

    async fn delete_config(&self, id: Uuid, actor: &str, at: DateTime<Utc>) -> Result<()> {
        let mut tx = self.begin_write("delete alert config").await?;
        let before = load_config(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("alert config {id}")))?;
        sqlx::query("DELETE FROM alert_configs WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .db("delete alert config")?;
        audit(
            &mut tx,
            id,
            AuditAction::Deleted,
            actor,
            at,
            Some(&before),
            None,
        )
        .await?;
        self.commit(tx, "commit alert config").await?;
        Ok(())
    }

    async fn get_config(&self, id: Uuid) -> Result<AlertConfig> {
        let sql = format!("{SELECT_CONFIG} WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .db("read alert config")?;
        row.as_ref()
            .map(decode_config)
            .transpose()?
            .ok_or_else(|| Error::not_found(format!("alert config {id}")))
    }

    async fn list_configs(
        &self,
        project: Option<&ProjectId>,
        enabled_only: bool,
    ) -> Result<Vec<AlertConfig>> {
        let mut w = Where::default();
        if let Some(p) = project {
            w.and("project = ?", [Arg::Text(p.as_str().to_owned())]);
        }
        if enabled_only {
            w.and("enabled", []);
        }
        let sql = format!("{SELECT_CONFIG}{} ORDER BY created_at, id", w.sql());
        let rows = query_with(sql, w.arguments([])?)
            .fetch_all(self.reader())
            .await
            .db("list alert configs")?;
        rows.iter().map(decode_config).collect()
    }

    async fn config_audit(&self, config_id: Uuid) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, config_id, action, actor, at, before, after FROM alert_config_audit \
             WHERE config_id = ? ORDER BY seq",
        )
        .bind(config_id)
        .fetch_all(self.reader())
        .await
        .db("read audit trail")?;
        rows.iter()
            .map(|row| {
                const W: &str = "audit";
                let json_col = |col: &str| -> Result<Option<serde_json::Value>> {
                    get::<Option<String>>(row, W, col)?
                        .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(W, e)))
                        .transpose()
                };
                Ok(AuditEntry {
                    id: get(row, W, "id")?,
                    config_id: get(row, W, "config_id")?,
                    action: parse_action(W, &get::<String>(row, W, "action")?)?,
                    actor: get(row, W, "actor")?,
                    at: get_time(row, W, "at")?,
                    before: json_col("before")?,
                    after: json_col("after")?,
                })
            })
            .collect()
    }
}

const SELECT_ALERT: &str = "SELECT id, config_id, project, metric, severity, triggered_at, value, \
     threshold, message, status, acknowledged_by, acknowledged_at, acknowledgement_note, \
     resolved_by, resolved_at FROM alert_history";

/// An alert row without its notification records.
fn decode_alert(row: &SqliteRow) -> Result<Alert> {
    const W: &str = "alert";
    Ok(Alert {
        fired: NewAlert {
            id: get(row, W, "id")?,
            config_id: get(row, W, "config_id")?,
            project: ProjectId::parse(get::<String>(row, W, "project")?)
                .map_err(|e| corrupt(W, e))?,
            metric: MetricName::parse(get::<String>(row, W, "metric")?)
                .map_err(|e| corrupt(W, e))?,
            severity: get_parsed(row, W, "severity")?,
            triggered_at: get_time(row, W, "triggered_at")?,
            value: get(row, W, "value")?,
            threshold: get(row, W, "threshold")?,
            message: get(row, W, "message")?,
        },
        status: get_parsed(row, W, "status")?,
        acknowledged_by: get(row, W, "acknowledged_by")?,
        acknowledged_at: get_opt_time(row, W, "acknowledged_at")?,
        acknowledgement_note: get(row, W, "acknowledgement_note")?,
        resolved_by: get(row, W, "resolved_by")?,
        resolved_at: get_opt_time(row, W, "resolved_at")?,
        notifications: Vec::new(),
    })
}

fn decode_record(row: &SqliteRow) -> Result<(Uuid, NotificationRecord)> {
    const W: &str = "alert notification";
    let latency: Option<i64> = get(row, W, "latency_ms")?;
    Ok((
        get(row, W, "alert_id")?,
        NotificationRecord {
            channel: get_parsed(row, W, "channel")?,
            recipient: get(row, W, "recipient")?,
            outcome: get(row, W, "outcome")?,
            attempts: get_u32(row, W, "attempts")?,
            latency_ms: latency
                .map(|l| u64::try_from(l).map_err(|_| corrupt(W, "negative latency")))
                .transpose()?,
            at: get_time(row, W, "at")?,
        },
    ))
}

/// Fills in the notification records of `alerts`, in the order they were recorded.
async fn attach_notifications<'e, E>(executor: E, alerts: &mut [Alert]) -> Result<()>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    if alerts.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT alert_id, channel, recipient, outcome, attempts, latency_ms, at \
         FROM alert_notifications WHERE alert_id IN ({}) ORDER BY seq",
        placeholders(alerts.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in alerts.iter() {
        q = q.bind(a.fired.id);
    }
    let rows = q.fetch_all(executor).await.db("read alert notifications")?;
    let mut by_alert: HashMap<Uuid, Vec<NotificationRecord>> = HashMap::new();
    for row in &rows {
        let (id, record) = decode_record(row)?;
        by_alert.entry(id).or_default().push(record);
    }
    for a in alerts {
        a.notifications = by_alert.remove(&a.fired.id).unwrap_or_default();
    }
    Ok(())
}

async fn load_alert(tx: &mut Transaction<'static, Sqlite>, id: Uuid) -> Result<Option<Alert>> {
    let sql = format!("{SELECT_ALERT} WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .db("read alert")?;
    let Some(row) = row else { return Ok(None) };
    let mut alerts = [decode_alert(&row)?];
    attach_notifications(&mut **tx, &mut alerts).await?;
    let [alert] = alerts;
    Ok(Some(alert))
}

impl SqliteStore {
    /// Loads an alert, applies `change` (the core's lifecycle rules) and stores its state.
    async fn update_alert(
        &self,
        id: Uuid,
        context: &str,
        change: impl FnOnce(&mut Alert) -> Result<()> + Send,
    ) -> Result<Alert> {
        let mut tx = self.begin_write(context).await?;
        let mut alert = load_alert(&mut tx, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("alert {id}")))?;
        change(&mut alert)?;
        sqlx::query(
            "UPDATE alert_history SET status = ?, acknowledged_by = ?, acknowledged_at = ?, \
             acknowledgement_note = ?, resolved_by = ?, resolved_at = ? WHERE id = ?",
        )
        .bind(alert.status.as_str())
        .bind(alert.acknowledged_by.as_deref())
        .bind(alert.acknowledged_at.map(micros))
        .bind(alert.acknowledgement_note.as_deref())
        .bind(alert.resolved_by.as_deref())
        .bind(alert.resolved_at.map(micros))
        .bind(id)
        .execute(&mut *tx)
        .await
        .db(context)?;
        self.commit(tx, context).await?;
        Ok(alert)
    }
}

/// Opens an alert inside the caller's transaction (see `AlertHistoryStore::open_alert`).
async fn open_in(tx: &mut Transaction<'static, Sqlite>, alert: &NewAlert) -> Result<OpenOutcome> {
    if let Some(existing) = load_alert(tx, alert.id).await? {
        return Ok(OpenOutcome::AlreadyOpen(existing));
    }
    let open_id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM alert_history WHERE config_id = ? AND status <> 'resolved'",
    )
    .bind(alert.config_id)
    .fetch_optional(&mut **tx)
    .await
    .db("find open alert")?;
    if let Some(open_id) = open_id {
        let open = load_alert(tx, open_id)
            .await?
            .ok_or_else(|| Error::Internal(format!("alert {open_id} vanished")))?;
        return Ok(OpenOutcome::AlreadyOpen(open));
    }
    sqlx::query(
        "INSERT INTO alert_history (id, config_id, project, metric, severity, triggered_at, \
         value, threshold, message, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'active')",
    )
    .bind(alert.id)
    .bind(alert.config_id)
    .bind(alert.project.as_str())
    .bind(alert.metric.as_str())
    .bind(alert.severity.as_str())
    .bind(micros(alert.triggered_at))
    .bind(alert.value)
    .bind(alert.threshold)
    .bind(&alert.message)
    .execute(&mut **tx)
    .await
    .db("open alert")?;
    Ok(OpenOutcome::Opened(Alert::opened(alert.clone())))
}

/// Resolves an unresolved alert inside the caller's transaction; whether it changed.
async fn resolve_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
    by: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE alert_history SET status = 'resolved', resolved_by = ?, resolved_at = ? \
         WHERE id = ? AND status <> 'resolved'",
    )
    .bind(by)
    .bind(micros(at))
    .bind(id)
    .execute(&mut **tx)
    .await
    .db("resolve alert")?
    .rows_affected();
    Ok(changed > 0)
}

#[async_trait]
impl AlertHistoryStore for SqliteStore {
    async fn open_alert(&self, alert: &NewAlert) -> Result<OpenOutcome> {
        let mut tx = self.begin_write("open alert").await?;
        let outcome = open_in(&mut tx, alert).await?;
        if let OpenOutcome::Opened(_) = outcome {
            self.commit(tx, "commit open alert").await?;
        }
        Ok(outcome)
    }

    async fn get_alert(&self, id: Uuid) -> Result<Alert> {
        let sql = format!("{SELECT_ALERT} WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.reader())
            .await
            .db("read alert")?
            .ok_or_else(|| Error::not_found(format!("alert {id}")))?;
        let mut alerts = [decode_alert(&row)?];
        attach_notifications(self.reader(), &mut alerts).await?;
        let [alert] = alerts;
        Ok(alert)
    }

    async fn list_alerts(&self, filter: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>> {
        let mut w = Where::default();
        if let Some(p) = &filter.project {
            w.and("project = ?", [Arg::Text(p.as_str().to_owned())]);
        }
        if let Some(c) = filter.config_id {
            w.and("config_id = ?", [Arg::Id(c)]);
        }
        w.any_of(
            "status",
            filter
                .statuses
                .iter()
                .map(|s| Arg::Text(s.as_str().to_owned())),
        );
        if let Some(s) = filter.severity {
            w.and("severity = ?", [Arg::Text(s.as_str().to_owned())]);
        }
        if let Some(m) = &filter.metric {
            w.and("metric = ?", [Arg::Text(m.as_str().to_owned())]);
        }
        if let Some(r) = &filter.range {
            w.and(
                "triggered_at >= ? AND triggered_at < ?",
                [Arg::Int(micros(r.start())), Arg::Int(micros(r.end()))],
            );
        }
        w.before("triggered_at", page.cursor);
        let sql = format!(
            "{SELECT_ALERT}{} ORDER BY triggered_at DESC, id DESC LIMIT ?",
            w.sql()
        );
        let args = w.page_arguments(page)?;
        let rows = query_with(sql, args)
            .fetch_all(self.reader())
            .await
            .db("list alerts")?;
        let mut alerts = rows.iter().map(decode_alert).collect::<Result<Vec<_>>>()?;
        attach_notifications(self.reader(), &mut alerts).await?;
        Ok(Page::from_overfetch(alerts, page, alert_cursor))
    }

    async fn acknowledge_alert(
        &self,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<Alert> {
        self.update_alert(id, "acknowledge alert", |a| a.acknowledge(by, at, note))
            .await
    }

    async fn resolve_alert(&self, id: Uuid, by: &str, at: DateTime<Utc>) -> Result<Alert> {
        self.update_alert(id, "resolve alert", |a| {
            a.resolve(by, at);
            Ok(())
        })
        .await
    }

    async fn last_fired(&self, config_id: Uuid) -> Result<Option<DateTime<Utc>>> {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT max(triggered_at) FROM alert_history WHERE config_id = ?")
                .bind(config_id)
                .fetch_one(self.reader())
                .await
                .db("read last fired")?;
        crate::codec::opt_from_micros("alert", at)
    }

    async fn record_notification(&self, alert_id: Uuid, record: &NotificationRecord) -> Result<()> {
        let mut tx = self.begin_write("record notification").await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM alert_history WHERE id = ?")
            .bind(alert_id)
            .fetch_optional(&mut *tx)
            .await
            .db("record notification")?;
        if exists.is_none() {
            return Err(Error::not_found(format!("alert {alert_id}")));
        }
        let latency = record
            .latency_ms
            .map(|l| to_i64("latency_ms", l))
            .transpose()?;
        sqlx::query(
            "INSERT INTO alert_notifications (alert_id, channel, recipient, outcome, attempts, \
             latency_ms, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(alert_id)
        .bind(record.channel.as_str())
        .bind(&record.recipient)
        .bind(&record.outcome)
        .bind(i64::from(record.attempts))
        .bind(latency)
        .bind(micros(record.at))
        .execute(&mut *tx)
        .await
        .db("record notification")?;
        self.commit(tx, "commit notification record").await?;
        Ok(())
    }

    async fn commit_alert_step(&self, step: &AlertStepCommit) -> Result<AlertStepApplied> {
        let mut tx = self.begin_write("commit alert step").await?;
        let mut applied = AlertStepApplied::default();
        let mut skipped = HashSet::new();
        for w in &step.writes {
            match w {
                AlertWrite::Open(alert) => match open_in(&mut tx, alert).await? {
                    OpenOutcome::Opened(_) => applied.opened.push(alert.id),
                    OpenOutcome::AlreadyOpen(a) if a.fired.id == alert.id => {}
                    OpenOutcome::AlreadyOpen(_) => {
                        skipped.insert(alert.id);
                    }
                },
                AlertWrite::Resolve { alert_id, by, at } => {
                    if resolve_in(&mut tx, *alert_id, by, *at).await? {
                        applied.resolved.push(*alert_id);
                    }
                }
                AlertWrite::Enqueue(notifications) => {
                    let kept = AlertWrite::kept(notifications, &skipped);
                    applied.enqueued += insert_outbox(&mut tx, &kept, step.at).await?;
                }
            }
        }
        put_job_state(&mut tx, &step.job, step.at, &step.state).await?;
        self.commit(tx, "commit alert step").await?;
        Ok(applied)
    }
}
