//! `MemoryStore`: every store port in process memory. For tests, examples and embedders that
//! need no persistence; it is the reference the conformance suite is checked against.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::alert::import::ConfigImport;
use crate::alert::{
    Alert, AlertConfig, AlertConfigSpec, AlertStatus, AuditAction, AuditEntry, NewAlert,
    NotificationRecord,
};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::ids::{EventId, ProjectId, UserId};
use crate::notification::{
    DeliveryAttempt, InAppNotification, Notification, NotificationPreferences, OutboxEntry,
    OutboxStatus, PreferenceSubject,
};
use crate::page::{Cursor, Page, PageRequest};
use crate::ports::event_store::event_cursor;
use crate::ports::{
    AlertConfigStore, AlertFilter, AlertHistoryStore, AlertStepApplied, AlertStepCommit,
    AlertWrite, DirtyHour, EventFilter, EventSink, EventStore, InAppStore, JobLease, JobStore,
    NotificationOutbox, OpenOutcome, PreferenceStore, ProjectStore, RollupStore, Store,
    WriteOutcome, WriteReport,
};
use crate::ports::{alert_cursor, in_app_cursor};
use crate::project::{ApiKeyHash, ApiKeyRecord, Project, ProjectSettings};
use crate::rollup::{Rollup, RollupKey, RollupQuery};
use crate::time::Granularity;

#[derive(Debug, Default)]
struct Inner {
    events: BTreeMap<(ProjectId, EventId), Event>,
    dirty: BTreeMap<(DateTime<Utc>, ProjectId), u64>,
    // Dirty-marker versions come from one counter so a version is never reused after a clear.
    dirty_seq: u64,
    // The version each hour's marker had when it was last cleared.
    cleared: BTreeMap<(DateTime<Utc>, ProjectId), u64>,
    rollups: BTreeMap<RollupKey, Rollup>,
    configs: BTreeMap<Uuid, AlertConfig>,
    audit: Vec<AuditEntry>,
    alerts: HashMap<Uuid, Alert>,
    outbox: HashMap<Uuid, OutboxEntry>,
    attempts: HashMap<Uuid, Vec<DeliveryAttempt>>,
    in_app: HashMap<Uuid, InAppNotification>,
    preferences: HashMap<PreferenceSubject, NotificationPreferences>,
    projects: BTreeMap<ProjectId, Project>,
    api_keys: Vec<ApiKeyRecord>,
    watermarks: HashMap<String, DateTime<Utc>>,
    job_states: HashMap<String, String>,
}

/// Every store port in memory. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    locks: Arc<Mutex<HashSet<String>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each method leaves the data consistent before it can panic, so a poisoned lock
        // still guards valid data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn newest_first<T>(mut items: Vec<T>, page: &PageRequest, key: impl Fn(&T) -> Cursor) -> Page<T> {
    items.sort_by_key(|i| std::cmp::Reverse(key(i)));
    let items: Vec<T> = items
        .into_iter()
        .filter(|i| {
            page.cursor.is_none_or(|c| {
                let k = key(i);
                c.is_before(k.at, k.id)
            })
        })
        .take(page.limit_usize() + 1)
        .collect();
    Page::from_overfetch(items, page, key)
}

#[async_trait]
impl EventSink for MemoryStore {
    async fn write_batch(&self, events: &[Event]) -> Result<WriteReport> {
        let mut inner = self.lock();
        let mut outcomes = Vec::with_capacity(events.len());
        for e in events {
            let key = (e.project.clone(), e.id);
            if inner.events.contains_key(&key) {
                outcomes.push(WriteOutcome::Duplicate);
                continue;
            }
            inner.events.insert(key, e.clone());
            let hour = Granularity::Hour.bucket_start(e.occurred_at);
            inner.dirty_seq += 1;
            let version = inner.dirty_seq;
            inner.dirty.insert((hour, e.project.clone()), version);
            outcomes.push(WriteOutcome::Inserted);
        }
        Ok(WriteReport { outcomes })
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn query_events(&self, filter: &EventFilter, page: &PageRequest) -> Result<Page<Event>> {
        let inner = self.lock();
        let matching: Vec<Event> = inner
            .events
            .values()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        Ok(newest_first(matching, page, event_cursor))
    }

    async fn get_event(&self, project: &ProjectId, id: EventId) -> Result<Option<Event>> {
        Ok(self.lock().events.get(&(project.clone(), id)).cloned())
    }

    async fn delete_events_before(
        &self,
        project: Option<&ProjectId>,
        before: DateTime<Utc>,
    ) -> Result<u64> {
        let mut inner = self.lock();
        let n = inner.events.len();
        inner
            .events
            .retain(|(p, _), e| !(e.occurred_at < before && project.is_none_or(|want| p == want)));
        Ok((n - inner.events.len()) as u64)
    }

    async fn dirty_hours(&self, limit: usize) -> Result<Vec<DirtyHour>> {
        Ok(self
            .lock()
            .dirty
            .iter()
            .take(limit)
            .map(|((hour, project), version)| DirtyHour {
                project: project.clone(),
                hour: *hour,
                version: *version,
            })
            .collect())
    }

    async fn clear_dirty_hours(&self, hours: &[DirtyHour]) -> Result<u64> {
        let mut inner = self.lock();
        let mut cleared = 0;
        for h in hours {
            let key = (h.hour, h.project.clone());
            if inner.dirty.get(&key) == Some(&h.version) {
                inner.dirty.remove(&key);
                inner.cleared.insert(key, h.version);
                cleared += 1;
            }
        }
        Ok(cleared)
    }

    async fn hour_versions(
        &self,
        project: &ProjectId,
        hours: &[DateTime<Utc>],
    ) -> Result<Vec<(DateTime<Utc>, u64)>> {
        let inner = self.lock();
        Ok(hours
            .iter()
            .filter_map(|h| {
                let key = (*h, project.clone());
                inner
                    .dirty
                    .get(&key)
                    .or_else(|| inner.cleared.get(&key))
                    .map(|v| (*h, *v))
            })
            .collect())
    }
}

#[async_trait]
impl RollupStore for MemoryStore {
    async fn upsert_rollups(&self, rows: &[Rollup]) -> Result<u64> {
        let mut inner = self.lock();
        for r in rows {
            inner.rollups.insert(r.key.clone(), r.clone());
        }
        Ok(rows.len() as u64)
    }

    async fn query_rollups(&self, query: &RollupQuery) -> Result<Vec<Rollup>> {
        let inner = self.lock();
        let mut rows: Vec<Rollup> = inner
            .rollups
            .values()
            .filter(|r| query.matches(&r.key))
            .cloned()
            .collect();
        crate::rollup::sort_query_rows(&mut rows);
        Ok(rows)
    }
}

fn audit(
    inner: &mut Inner,
    config_id: Uuid,
    action: AuditAction,
    actor: &str,
    at: DateTime<Utc>,
    before: Option<&AlertConfig>,
    after: Option<&AlertConfig>,
) {
    inner.audit.push(AuditEntry {
        id: Uuid::new_v4(),
        config_id,
        action,
        actor: actor.to_owned(),
        at,
        before: before.and_then(|c| serde_json::to_value(c).ok()),
        after: after.and_then(|c| serde_json::to_value(c).ok()),
    });
}

fn name_taken(inner: &Inner, spec: &AlertConfigSpec, except: Option<Uuid>) -> bool {
    inner
        .configs
        .values()
        .any(|c| Some(c.id) != except && c.spec.project == spec.project && c.spec.name == spec.name)
}

#[async_trait]
impl AlertConfigStore for MemoryStore {
    async fn create_config(
        &self,
        id: Uuid,
        spec: &AlertConfigSpec,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig> {
        self.lock()
            .create_config(id, spec, AuditAction::Created, actor, at)
    }

    async fn update_config(
        &self,
        id: Uuid,
        spec: &AlertConfigSpec,
        expected_version: Option<u64>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig> {
        self.lock()
            .update_config(id, spec, expected_version, AuditAction::Updated, actor, at)
    }

    async fn delete_config(&self, id: Uuid, actor: &str, at: DateTime<Utc>) -> Result<()> {
        let mut inner = self.lock();
        let before = inner
            .configs
            .remove(&id)
            .ok_or_else(|| Error::not_found(format!("alert config {id}")))?;
        audit(
            &mut inner,
            id,
            AuditAction::Deleted,
            actor,
            at,
            Some(&before),
            None,
        );
        Ok(())
    }

    async fn get_config(&self, id: Uuid) -> Result<AlertConfig> {
        self.lock()
            .configs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("alert config {id}")))
    }

    async fn list_configs(
        &self,
        project: Option<&ProjectId>,
        enabled_only: bool,
    ) -> Result<Vec<AlertConfig>> {
        let mut list: Vec<AlertConfig> = self
            .lock()
            .configs
            .values()
            .filter(|c| project.is_none_or(|p| &c.spec.project == p))
            .filter(|c| !enabled_only || c.spec.enabled)
            .cloned()
            .collect();
        list.sort_by_key(|c| (c.created_at, c.id));
        Ok(list)
    }

    async fn import_configs(
        &self,
        writes: &[ConfigImport],
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<AlertConfig>> {
        let mut inner = self.lock();
        // All or nothing: on a failure the configurations and the trail are put back.
        let (configs, audit_len) = (inner.configs.clone(), inner.audit.len());
        let mut done = Vec::with_capacity(writes.len());
        for w in writes {
            let result = match w.replaces {
                None => inner.create_config(w.id, &w.spec, AuditAction::Imported, actor, at),
                Some(v) => {
                    inner.update_config(w.id, &w.spec, Some(v), AuditAction::Imported, actor, at)
                }
            };
            match result {
                Ok(c) => done.push(c),
                Err(e) => {
                    inner.configs = configs;
                    inner.audit.truncate(audit_len);
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    async fn config_audit(&self, config_id: Uuid) -> Result<Vec<AuditEntry>> {
        Ok(self
            .lock()
            .audit
            .iter()
            .filter(|a| a.config_id == config_id)
            .cloned()
            .collect())
    }
}

impl MemoryStore {
    fn update_alert(&self, id: Uuid, f: impl FnOnce(&mut Alert) -> Result<()>) -> Result<Alert> {
        let mut inner = self.lock();
        let alert = inner
            .alerts
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(format!("alert {id}")))?;
        let mut updated = alert.clone();
        f(&mut updated)?;
        *alert = updated.clone();
        Ok(updated)
    }
}

#[async_trait]
impl AlertHistoryStore for MemoryStore {
    async fn open_alert(&self, alert: &NewAlert) -> Result<OpenOutcome> {
        Ok(self.lock().open_alert(alert))
    }

    async fn get_alert(&self, id: Uuid) -> Result<Alert> {
        self.lock()
            .alerts
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("alert {id}")))
    }

    async fn list_alerts(&self, filter: &AlertFilter, page: &PageRequest) -> Result<Page<Alert>> {
        let matching: Vec<Alert> = self
            .lock()
            .alerts
            .values()
            .filter(|a| filter.matches(a))
            .cloned()
            .collect();
        Ok(newest_first(matching, page, alert_cursor))
    }

    async fn acknowledge_alert(
        &self,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
        note: Option<&str>,
    ) -> Result<Alert> {
        self.update_alert(id, |a| a.acknowledge(by, at, note))
    }

    async fn resolve_alert(&self, id: Uuid, by: &str, at: DateTime<Utc>) -> Result<Alert> {
        self.update_alert(id, |a| {
            a.resolve(by, at);
            Ok(())
        })
    }

    async fn last_fired(&self, config_id: Uuid) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .lock()
            .alerts
            .values()
            .filter(|a| a.fired.config_id == config_id)
            .map(|a| a.fired.triggered_at)
            .max())
    }

    async fn record_notification(&self, alert_id: Uuid, record: &NotificationRecord) -> Result<()> {
        self.update_alert(alert_id, |a| {
            a.notifications.push(record.clone());
            Ok(())
        })
        .map(|_| ())
    }

    async fn commit_alert_step(&self, step: &AlertStepCommit) -> Result<AlertStepApplied> {
        // One lock over the whole step: nothing of it is visible before all of it is.
        let mut inner = self.lock();
        let mut applied = AlertStepApplied::default();
        let mut skipped = HashSet::new();
        for w in &step.writes {
            match w {
                AlertWrite::Open(alert) => match inner.open_alert(alert) {
                    OpenOutcome::Opened(_) => applied.opened.push(alert.id),
                    OpenOutcome::AlreadyOpen(a) if a.fired.id == alert.id => {}
                    OpenOutcome::AlreadyOpen(_) => {
                        skipped.insert(alert.id);
                    }
                },
                AlertWrite::Resolve { alert_id, by, at } => {
                    if let Some(a) = inner.alerts.get_mut(alert_id)
                        && a.status != AlertStatus::Resolved
                    {
                        a.resolve(by, *at);
                        applied.resolved.push(*alert_id);
                    }
                }
                AlertWrite::Enqueue(notifications) => {
                    let kept = AlertWrite::kept(notifications, &skipped);
                    applied.enqueued += inner.enqueue(&kept, step.at);
                }
            }
        }
        inner.watermarks.insert(step.job.clone(), step.at);
        inner
            .job_states
            .insert(step.job.clone(), step.state.clone());
        Ok(applied)
    }
}

impl Inner {
    fn create_config(
        &mut self,
        id: Uuid,
        spec: &AlertConfigSpec,
        action: AuditAction,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig> {
        if self.configs.contains_key(&id) {
            return Err(Error::Conflict(format!("alert config {id} already exists")));
        }
        if name_taken(self, spec, None) {
            return Err(spec.name_taken());
        }
        let config = AlertConfig::created(id, spec, at);
        self.configs.insert(id, config.clone());
        audit(self, id, action, actor, at, None, Some(&config));
        Ok(config)
    }

    fn update_config(
        &mut self,
        id: Uuid,
        spec: &AlertConfigSpec,
        expected_version: Option<u64>,
        action: AuditAction,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<AlertConfig> {
        let before = self
            .configs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("alert config {id}")))?;
        let after = before.updated(spec, expected_version, at)?;
        if name_taken(self, spec, Some(id)) {
            return Err(spec.name_taken());
        }
        self.configs.insert(id, after.clone());
        audit(self, id, action, actor, at, Some(&before), Some(&after));
        Ok(after)
    }

    fn open_alert(&mut self, alert: &NewAlert) -> OpenOutcome {
        if let Some(existing) = self.alerts.get(&alert.id) {
            return OpenOutcome::AlreadyOpen(existing.clone());
        }
        if let Some(open) = self
            .alerts
            .values()
            .find(|a| a.fired.config_id == alert.config_id && a.status != AlertStatus::Resolved)
        {
            return OpenOutcome::AlreadyOpen(open.clone());
        }
        let opened = Alert::opened(alert.clone());
        self.alerts.insert(alert.id, opened.clone());
        OpenOutcome::Opened(opened)
    }

    fn enqueue(&mut self, notifications: &[Notification], at: DateTime<Utc>) -> u64 {
        let mut new = 0;
        for n in notifications {
            if self.outbox.contains_key(&n.id) {
                continue;
            }
            self.outbox.insert(
                n.id,
                OutboxEntry {
                    notification: n.clone(),
                    status: OutboxStatus::Pending,
                    attempts: 0,
                    next_attempt_at: at,
                    last_error: None,
                    created_at: at,
                    sent_at: None,
                },
            );
            new += 1;
        }
        new
    }
}

#[async_trait]
impl NotificationOutbox for MemoryStore {
    async fn enqueue(&self, notifications: &[Notification], at: DateTime<Utc>) -> Result<u64> {
        Ok(self.lock().enqueue(notifications, at))
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<OutboxEntry>> {
        let mut inner = self.lock();
        let mut due: Vec<&mut OutboxEntry> = inner
            .outbox
            .values_mut()
            .filter(|e| e.status == OutboxStatus::Pending && e.next_attempt_at <= now)
            .collect();
        due.sort_by_key(|e| {
            (
                std::cmp::Reverse(e.notification.severity),
                e.next_attempt_at,
                e.created_at,
                e.notification.id,
            )
        });
        Ok(due
            .into_iter()
            .take(limit)
            .map(|e| {
                e.next_attempt_at = now + lease;
                e.clone()
            })
            .collect())
    }

    async fn record_attempt(&self, id: Uuid, attempt: &DeliveryAttempt) -> Result<OutboxEntry> {
        let mut inner = self.lock();
        let entry = inner
            .outbox
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(format!("outbox entry {id}")))?;
        entry.record(attempt);
        let entry = entry.clone();
        inner.attempts.entry(id).or_default().push(attempt.clone());
        Ok(entry)
    }

    async fn outbox_entry(&self, id: Uuid) -> Result<OutboxEntry> {
        self.lock()
            .outbox
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("outbox entry {id}")))
    }

    async fn delivery_attempts(&self, id: Uuid) -> Result<Vec<DeliveryAttempt>> {
        Ok(self.lock().attempts.get(&id).cloned().unwrap_or_default())
    }

    async fn alert_outbox_entries(&self, alert_id: Uuid) -> Result<Vec<OutboxEntry>> {
        let mut out: Vec<OutboxEntry> = self
            .lock()
            .outbox
            .values()
            .filter(|e| e.notification.alert_id == Some(alert_id))
            .cloned()
            .collect();
        out.sort_by_key(|e| (e.created_at, e.notification.id));
        Ok(out)
    }
}

#[async_trait]
impl InAppStore for MemoryStore {
    async fn create_in_app(&self, notification: &InAppNotification) -> Result<bool> {
        let mut inner = self.lock();
        if inner.in_app.contains_key(&notification.id) {
            return Ok(false);
        }
        inner.in_app.insert(notification.id, notification.clone());
        Ok(true)
    }

    async fn list_in_app(
        &self,
        user: &UserId,
        unread_only: bool,
        page: &PageRequest,
    ) -> Result<Page<InAppNotification>> {
        let matching: Vec<InAppNotification> = self
            .lock()
            .in_app
            .values()
            .filter(|n| &n.user == user && (!unread_only || n.read_at.is_none()))
            .cloned()
            .collect();
        Ok(newest_first(matching, page, in_app_cursor))
    }

    async fn get_in_app(&self, user: &UserId, id: Uuid) -> Result<Option<InAppNotification>> {
        Ok(self
            .lock()
            .in_app
            .get(&id)
            .filter(|n| &n.user == user)
            .cloned())
    }

    async fn mark_in_app_read(
        &self,
        user: &UserId,
        ids: &[Uuid],
        at: DateTime<Utc>,
    ) -> Result<u64> {
        let mut inner = self.lock();
        let mut changed = 0;
        for id in ids {
            if let Some(n) = inner.in_app.get_mut(id)
                && &n.user == user
                && n.read_at.is_none()
            {
                n.read_at = Some(at);
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn unread_in_app(&self, user: &UserId) -> Result<u64> {
        Ok(self
            .lock()
            .in_app
            .values()
            .filter(|n| &n.user == user && n.read_at.is_none())
            .count() as u64)
    }
}

#[async_trait]
impl PreferenceStore for MemoryStore {
    async fn preferences(
        &self,
        subject: &PreferenceSubject,
    ) -> Result<Option<NotificationPreferences>> {
        Ok(self.lock().preferences.get(subject).cloned())
    }

    async fn put_preferences(&self, preferences: &NotificationPreferences) -> Result<()> {
        self.lock()
            .preferences
            .insert(preferences.subject.clone(), preferences.clone());
        Ok(())
    }
}

#[async_trait]
impl ProjectStore for MemoryStore {
    async fn create_project(&self, project: &Project) -> Result<()> {
        let mut inner = self.lock();
        if inner.projects.contains_key(&project.id) {
            return Err(Error::Conflict(format!(
                "project {} already exists",
                project.id
            )));
        }
        inner.projects.insert(project.id.clone(), project.clone());
        Ok(())
    }

    async fn get_project(&self, id: &ProjectId) -> Result<Project> {
        self.lock()
            .projects
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("project {id}")))
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        Ok(self.lock().projects.values().cloned().collect())
    }

    async fn update_project_settings(
        &self,
        id: &ProjectId,
        settings: &ProjectSettings,
    ) -> Result<Project> {
        let mut inner = self.lock();
        let p = inner
            .projects
            .get_mut(id)
            .ok_or_else(|| Error::not_found(format!("project {id}")))?;
        p.settings = settings.clone();
        Ok(p.clone())
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let mut inner = self.lock();
        if !inner.projects.contains_key(&key.project) {
            return Err(Error::not_found(format!("project {}", key.project)));
        }
        if inner
            .api_keys
            .iter()
            .any(|k| k.hash == key.hash || k.id == key.id)
        {
            return Err(Error::Conflict("api key already exists".into()));
        }
        inner.api_keys.push(key.clone());
        Ok(())
    }

    async fn api_key_by_hash(&self, hash: &ApiKeyHash) -> Result<Option<ApiKeyRecord>> {
        Ok(self
            .lock()
            .api_keys
            .iter()
            .find(|k| &k.hash == hash)
            .cloned())
    }

    async fn list_api_keys(&self, project: &ProjectId) -> Result<Vec<ApiKeyRecord>> {
        let mut keys: Vec<ApiKeyRecord> = self
            .lock()
            .api_keys
            .iter()
            .filter(|k| &k.project == project)
            .cloned()
            .collect();
        keys.sort_by_key(|k| (k.created_at, k.id));
        Ok(keys)
    }

    async fn revoke_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<ApiKeyRecord> {
        let mut inner = self.lock();
        let key = key_mut(&mut inner, id)?;
        if key.revoked_at.is_none() {
            key.revoked_at = Some(at);
        }
        Ok(key.clone())
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
        let mut inner = self.lock();
        let key = key_mut(&mut inner, id)?;
        key.last_used_at = Some(key.last_used_at.map_or(at, |t| t.max(at)));
        Ok(())
    }

    async fn delete_project(&self, id: &ProjectId) -> Result<()> {
        let mut inner = self.lock();
        if inner.projects.remove(id).is_none() {
            return Err(Error::not_found(format!("project {id}")));
        }
        inner.events.retain(|(p, _), _| p != id);
        inner.dirty.retain(|(_, p), _| p != id);
        inner.cleared.retain(|(_, p), _| p != id);
        inner.rollups.retain(|k, _| &k.project != id);
        let configs: HashSet<Uuid> = inner
            .configs
            .values()
            .filter(|c| &c.spec.project == id)
            .map(|c| c.id)
            .collect();
        inner.configs.retain(|c, _| !configs.contains(c));
        inner.audit.retain(|a| !configs.contains(&a.config_id));
        inner.alerts.retain(|_, a| &a.fired.project != id);
        inner.api_keys.retain(|k| &k.project != id);
        Ok(())
    }
}

/// The stored key with this id, to change.
fn key_mut(inner: &mut Inner, id: Uuid) -> Result<&mut ApiKeyRecord> {
    inner
        .api_keys
        .iter_mut()
        .find(|k| k.id == id)
        .ok_or_else(|| Error::not_found(format!("api key {id}")))
}

/// Releases a memory lock when dropped.
struct MemoryLockGuard {
    locks: Arc<Mutex<HashSet<String>>>,
    name: String,
}

impl Drop for MemoryLockGuard {
    fn drop(&mut self) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.name);
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn watermark(&self, job: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.lock().watermarks.get(job).copied())
    }

    async fn set_watermark(&self, job: &str, at: DateTime<Utc>) -> Result<()> {
        self.lock().watermarks.insert(job.to_owned(), at);
        Ok(())
    }

    async fn job_state(&self, job: &str) -> Result<Option<String>> {
        Ok(self.lock().job_states.get(job).cloned())
    }

    async fn try_lock(&self, name: &str) -> Result<Option<JobLease>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if !locks.insert(name.to_owned()) {
            return Ok(None);
        }
        let guard = MemoryLockGuard {
            locks: Arc::clone(&self.locks),
            name: name.to_owned(),
        };
        Ok(Some(JobLease::new(name, Box::new(guard))))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
