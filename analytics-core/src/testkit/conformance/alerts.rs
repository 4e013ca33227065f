//! Contracts of `AlertConfigStore` and `AlertHistoryStore`.

use std::collections::HashSet;

use chrono::Duration;
use uuid::Uuid;

use crate::alert::import::ConfigImport;
use crate::alert::{AlertStatus, AuditAction, NoDataPolicy, NotificationRecord, Severity};
use crate::error::Error;
use crate::ids::Threshold;
use crate::notification::Channel;
use crate::page::PageRequest;
use crate::ports::{
    AlertFilter, AlertStepApplied, AlertStepCommit, AlertWrite, OpenOutcome, Store,
};
use crate::testkit::fixtures::{self, now, project};

/// Create, update and delete bump versions, detect stale writes and leave an audit trail
/// that outlives the configuration.
pub async fn alert_configs_are_versioned_and_audited(store: &dyn Store) {
    let id = Uuid::new_v4();
    let spec = fixtures::alert_spec("shop", "p95 latency", Severity::Warning);
    let created = store
        .create_config(id, &spec, "alice", now())
        .await
        .expect("create");
    assert_eq!(
        (created.version, created.created_at, created.updated_at),
        (1, now(), now())
    );
    assert_eq!(created.spec, spec);
    assert_eq!(store.get_config(id).await.expect("get"), created);
    assert!(matches!(
        store.create_config(id, &spec, "alice", now()).await,
        Err(Error::Conflict(_))
    ));

    let mut changed = spec.clone();
    changed.severity = Severity::Critical;
    changed.enabled = false;
    let later = now() + Duration::minutes(5);
    let updated = store
        .update_config(id, &changed, Some(1), "bob", later)
        .await
        .expect("update");
    assert_eq!(
        (updated.version, updated.created_at, updated.updated_at),
        (2, now(), later)
    );
    assert_eq!(updated.spec, changed);
    let stale = store
        .update_config(id, &spec, Some(1), "carol", later)
        .await;
    assert!(
        matches!(stale, Err(Error::Conflict(_))),
        "a stale version must conflict: {stale:?}"
    );
    assert_eq!(
        store.get_config(id).await.expect("get").version,
        2,
        "a failed update changes nothing"
    );
    // Without an expected version the write wins.
    let forced = store
        .update_config(id, &spec, None, "dave", later)
        .await
        .expect("update");
    assert_eq!(forced.version, 3);

    let missing = Uuid::new_v4();
    assert!(matches!(
        store.update_config(missing, &spec, None, "x", later).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_config(missing, "x", later).await,
        Err(Error::NotFound { .. })
    ));

    store
        .delete_config(id, "erin", later)
        .await
        .expect("delete");
    assert!(matches!(
        store.get_config(id).await,
        Err(Error::NotFound { .. })
    ));

    let audit = store.config_audit(id).await.expect("audit");
    let actions: Vec<_> = audit.iter().map(|a| (a.action, a.actor.as_str())).collect();
    assert_eq!(
        actions,
        [
            (AuditAction::Created, "alice"),
            (AuditAction::Updated, "bob"),
            (AuditAction::Updated, "dave"),
            (AuditAction::Deleted, "erin"),
        ],
        "failed writes are not audited"
    );
    assert!(audit[0].before.is_none() && audit[0].after.is_some());
    assert!(audit[1].before.is_some() && audit[1].after.is_some());
    assert_eq!(
        audit[1].after.as_ref().and_then(|v| v["severity"].as_str()),
        Some("critical")
    );
    assert!(audit[3].before.is_some() && audit[3].after.is_none());
    assert!(audit.iter().all(|a| a.config_id == id));
}

/// The engine settings (`for_secs`, `recovery_threshold`, `auto_resolve`, `no_data`) are
/// stored like every other field: non-default values survive create, read, list and update.
pub async fn alert_config_engine_settings_round_trip(store: &dyn Store) {
    let id = Uuid::new_v4();
    let mut spec = fixtures::alert_spec("shop", "held breach", Severity::Critical);
    spec.for_secs = 300;
    spec.recovery_threshold = Some(Threshold::new(420.5).expect("threshold"));
    spec.auto_resolve = false;
    spec.no_data = NoDataPolicy::Alerting;
    let created = store
        .create_config(id, &spec, "alice", now())
        .await
        .expect("create");
    assert_eq!(created.spec, spec);
    assert_eq!(store.get_config(id).await.expect("get").spec, spec);
    let listed = store.list_configs(None, false).await.expect("list");
    assert_eq!(
        listed.iter().find(|c| c.id == id).map(|c| &c.spec),
        Some(&spec)
    );

    let mut changed = spec.clone();
    changed.for_secs = 60;
    changed.recovery_threshold = None;
    changed.auto_resolve = true;
    changed.no_data = NoDataPolicy::Ok;
    store
        .update_config(id, &changed, Some(1), "bob", now())
        .await
        .expect("update");
    assert_eq!(store.get_config(id).await.expect("get").spec, changed);
}

/// Two configurations in one project cannot share a name; other projects can.
pub async fn alert_config_names_are_unique_per_project(store: &dyn Store) {
    let spec = fixtures::alert_spec("shop", "errors", Severity::Critical);
    let first = store
        .create_config(Uuid::new_v4(), &spec, "a", now())
        .await
        .expect("create");
    assert!(matches!(
        store.create_config(Uuid::new_v4(), &spec, "a", now()).await,
        Err(Error::Conflict(_))
    ));
    let elsewhere = fixtures::alert_spec("other", "errors", Severity::Critical);
    store
        .create_config(Uuid::new_v4(), &elsewhere, "a", now())
        .await
        .expect("other project");
    let second_spec = fixtures::alert_spec("shop", "latency", Severity::Critical);
    let second = store
        .create_config(Uuid::new_v4(), &second_spec, "a", now())
        .await
        .expect("create");
    // Renaming onto a taken name conflicts too.
    assert!(matches!(
        store
            .update_config(second.id, &spec, None, "a", now())
            .await,
        Err(Error::Conflict(_))
    ));
    // Keeping one's own name is fine.
    store
        .update_config(first.id, &spec, None, "a", now())
        .await
        .expect("same name");
}

/// Listing filters by project and enabled, oldest first.
pub async fn alert_configs_list_by_project_and_enabled(store: &dyn Store) {
    let mut made = Vec::new();
    for (i, (p, enabled)) in [
        ("shop", true),
        ("shop", false),
        ("other", true),
        ("shop", true),
    ]
    .iter()
    .enumerate()
    {
        let mut spec = fixtures::alert_spec(p, &format!("rule {i}"), Severity::Info);
        spec.enabled = *enabled;
        let c = store
            .create_config(
                Uuid::new_v4(),
                &spec,
                "a",
                now() + Duration::seconds(i as i64),
            )
            .await
            .expect("create");
        made.push(c);
    }
    let all = store.list_configs(None, false).await.expect("list");
    assert_eq!(
        all.iter().map(|c| c.id).collect::<Vec<_>>(),
        made.iter().map(|c| c.id).collect::<Vec<_>>()
    );
    let shop = store
        .list_configs(Some(&project("shop")), false)
        .await
        .expect("list");
    assert_eq!(shop.len(), 3);
    let shop_enabled = store
        .list_configs(Some(&project("shop")), true)
        .await
        .expect("list");
    assert_eq!(
        shop_enabled.iter().map(|c| c.id).collect::<Vec<_>>(),
        [made[0].id, made[3].id]
    );
    assert_eq!(store.list_configs(None, true).await.expect("list").len(), 3);
    assert_eq!(shop_enabled[0], made[0], "listed configs are complete");
}

/// A configuration has at most one unresolved alert; an acknowledged one still blocks a new
/// one, a resolved one does not; re-opening the same id is idempotent.
pub async fn one_unresolved_alert_per_config(store: &dyn Store) {
    let config = Uuid::new_v4();
    let first = fixtures::new_alert(config, now(), Severity::Critical);
    let opened = match store.open_alert(&first).await.expect("open") {
        OpenOutcome::Opened(a) => a,
        other => panic!("expected Opened, got {other:?}"),
    };
    assert_eq!(opened.status, AlertStatus::Active);
    assert_eq!(opened.fired, first);
    match store.open_alert(&first).await.expect("reopen same id") {
        OpenOutcome::AlreadyOpen(a) => assert_eq!(a.id(), first.id),
        other => panic!("re-opening the same id must be idempotent: {other:?}"),
    }
    let second = fixtures::new_alert(config, now() + Duration::minutes(1), Severity::Critical);
    match store.open_alert(&second).await.expect("open second") {
        OpenOutcome::AlreadyOpen(a) => assert_eq!(a.id(), first.id),
        other => panic!("an active alert blocks a new one: {other:?}"),
    }
    store
        .acknowledge_alert(first.id, "alice", now(), None)
        .await
        .expect("ack");
    assert!(
        matches!(
            store.open_alert(&second).await.expect("open"),
            OpenOutcome::AlreadyOpen(_)
        ),
        "an acknowledged alert is still unresolved"
    );
    store
        .resolve_alert(first.id, "alice", now())
        .await
        .expect("resolve");
    assert!(matches!(
        store.open_alert(&second).await.expect("open"),
        OpenOutcome::Opened(_)
    ));
    assert!(matches!(store.get_alert(second.id).await, Ok(a) if a.status == AlertStatus::Active));
    // Another configuration is independent.
    let other = fixtures::new_alert(Uuid::new_v4(), now(), Severity::Info);
    assert!(matches!(
        store.open_alert(&other).await.expect("open"),
        OpenOutcome::Opened(_)
    ));
}

/// Acknowledging moves an alert out of the active list, keeps the first acknowledgement and
/// cannot follow a resolution.
pub async fn acknowledged_alerts_leave_the_active_list(store: &dyn Store) {
    let a = fixtures::new_alert(Uuid::new_v4(), now(), Severity::Critical);
    let b = fixtures::new_alert(
        Uuid::new_v4(),
        now() + Duration::seconds(1),
        Severity::Warning,
    );
    store.open_alert(&a).await.expect("open a");
    store.open_alert(&b).await.expect("open b");
    let active = AlertFilter {
        statuses: vec![AlertStatus::Active],
        ..Default::default()
    };
    let page = PageRequest::first(100);
    assert_eq!(
        store
            .list_alerts(&active, &page)
            .await
            .expect("list")
            .items
            .len(),
        2
    );

    let t1 = now() + Duration::minutes(2);
    let acked = store
        .acknowledge_alert(a.id, "alice", t1, Some("on it: the pool is full"))
        .await
        .expect("ack");
    assert_eq!(acked.status, AlertStatus::Acknowledged);
    assert_eq!(
        (acked.acknowledged_by.as_deref(), acked.acknowledged_at),
        (Some("alice"), Some(t1))
    );
    assert_eq!(
        store
            .get_alert(a.id)
            .await
            .expect("get")
            .acknowledgement_note
            .as_deref(),
        Some("on it: the pool is full"),
        "the note is stored"
    );
    let still_active = store.list_alerts(&active, &page).await.expect("list").items;
    assert_eq!(
        still_active.iter().map(|x| x.id()).collect::<Vec<_>>(),
        [b.id],
        "an acknowledged alert is not active"
    );

    let again = store
        .acknowledge_alert(a.id, "bob", t1 + Duration::minutes(1), Some("mine now"))
        .await
        .expect("ack again");
    assert_eq!(
        (
            again.acknowledged_by.as_deref(),
            again.acknowledged_at,
            again.acknowledgement_note.as_deref()
        ),
        (Some("alice"), Some(t1), Some("on it: the pool is full")),
        "a second acknowledgement changes nothing, the note included"
    );

    let t2 = t1 + Duration::minutes(10);
    let resolved = store
        .resolve_alert(a.id, "carol", t2)
        .await
        .expect("resolve");
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(
        (resolved.resolved_by.as_deref(), resolved.resolved_at),
        (Some("carol"), Some(t2))
    );
    assert_eq!(
        resolved.acknowledged_by.as_deref(),
        Some("alice"),
        "resolution keeps the acknowledgement"
    );
    let again = store
        .resolve_alert(a.id, "dave", t2 + Duration::minutes(1))
        .await
        .expect("resolve again");
    assert_eq!(again.resolved_by.as_deref(), Some("carol"));
    assert!(matches!(
        store.acknowledge_alert(a.id, "x", t2, None).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.get_alert(a.id).await.expect("get"),
        again,
        "a refused acknowledgement changes nothing"
    );

    // Resolving an active alert directly is allowed.
    let r = store
        .resolve_alert(b.id, "erin", t2)
        .await
        .expect("resolve b");
    assert_eq!((r.status, r.acknowledged_by), (AlertStatus::Resolved, None));

    let missing = Uuid::new_v4();
    assert!(matches!(
        store.acknowledge_alert(missing, "x", t2, None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.resolve_alert(missing, "x", t2).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.get_alert(missing).await,
        Err(Error::NotFound { .. })
    ));
}

/// Listings filter on every field and page newest first without skips or repeats.
pub async fn alert_listings_filter_and_page(store: &dyn Store) {
    let mut all = Vec::new();
    for i in 0..12 {
        let sev = [Severity::Info, Severity::Warning, Severity::Critical][i % 3];
        let mut a = fixtures::new_alert(
            Uuid::new_v4(),
            now() + Duration::minutes((i / 2) as i64),
            sev,
        );
        if i == 11 {
            a.project = project("other");
        }
        if i == 10 {
            a.metric = crate::ids::MetricName::parse("api.errors").expect("metric");
        }
        store.open_alert(&a).await.expect("open");
        all.push(a);
    }
    store
        .acknowledge_alert(all[0].id, "a", now(), None)
        .await
        .expect("ack");
    store
        .resolve_alert(all[1].id, "a", now())
        .await
        .expect("resolve");

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_alerts(
                &AlertFilter::default(),
                &PageRequest::new(5, cursor).expect("page"),
            )
            .await
            .expect("list");
        seen.extend(page.items.iter().map(|a| (a.fired.triggered_at, a.id())));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 12, "no repeats");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");

    let count = |f: AlertFilter| async move {
        store
            .list_alerts(&f, &PageRequest::first(100))
            .await
            .expect("list")
            .items
            .len()
    };
    assert_eq!(
        count(AlertFilter {
            severity: Some(Severity::Critical),
            ..Default::default()
        })
        .await,
        4
    );
    assert_eq!(
        count(AlertFilter {
            project: Some(project("other")),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(AlertFilter {
            config_id: Some(all[5].config_id),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(AlertFilter {
            statuses: vec![AlertStatus::Acknowledged, AlertStatus::Resolved],
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(AlertFilter {
            metric: Some(crate::ids::MetricName::parse("api.errors").expect("metric")),
            ..Default::default()
        })
        .await,
        1
    );
    let range =
        crate::time::TimeRange::new(now() + Duration::minutes(1), now() + Duration::minutes(3))
            .expect("range");
    assert_eq!(
        count(AlertFilter {
            range: Some(range),
            ..Default::default()
        })
        .await,
        4
    );
}

/// `last_fired` tracks the newest trigger of a configuration; notification records append
/// in order.
pub async fn last_fired_and_notification_records(store: &dyn Store) {
    let config = Uuid::new_v4();
    assert_eq!(store.last_fired(config).await.expect("none yet"), None);
    let first = fixtures::new_alert(config, now(), Severity::Critical);
    store.open_alert(&first).await.expect("open");
    store
        .resolve_alert(first.id, "a", now())
        .await
        .expect("resolve");
    let later = now() + Duration::hours(1);
    let second = fixtures::new_alert(config, later, Severity::Critical);
    store.open_alert(&second).await.expect("open");
    assert_eq!(store.last_fired(config).await.expect("last"), Some(later));

    let rec = |channel, outcome: &str| NotificationRecord {
        channel,
        recipient: "ops@example.com".into(),
        outcome: outcome.into(),
        attempts: 2,
        latency_ms: Some(1500),
        at: later + Duration::seconds(2),
    };
    store
        .record_notification(second.id, &rec(Channel::Sms, "sent"))
        .await
        .expect("record");
    store
        .record_notification(second.id, &rec(Channel::Email, "failed"))
        .await
        .expect("record");
    let got = store.get_alert(second.id).await.expect("get");
    assert_eq!(
        got.notifications,
        vec![rec(Channel::Sms, "sent"), rec(Channel::Email, "failed")]
    );
    assert!(matches!(
        store
            .record_notification(Uuid::new_v4(), &rec(Channel::Sms, "sent"))
            .await,
        Err(Error::NotFound { .. })
    ));
}

/// An engine step commits its opens, resolves, outbox entries, watermark and state together;
/// an open refused because the configuration already has an unresolved alert takes its
/// notifications with it; replaying a committed step changes nothing.
pub async fn alert_steps_commit_transitions_outbox_and_state_together(store: &dyn Store) {
    let (busy, fresh) = (Uuid::new_v4(), Uuid::new_v4());
    let existing = fixtures::new_alert(busy, now(), Severity::Warning);
    store.open_alert(&existing).await.expect("open");
    let to_resolve = fixtures::new_alert(Uuid::new_v4(), now(), Severity::Info);
    store.open_alert(&to_resolve).await.expect("open");

    let at = now() + Duration::minutes(1);
    let opened = fixtures::new_alert(fresh, at, Severity::Critical);
    let refused = fixtures::new_alert(busy, at, Severity::Warning);
    let about = |alert: Uuid, channel| {
        let mut n = fixtures::notification(channel, Severity::Critical);
        n.alert_id = Some(alert);
        n
    };
    let kept = [
        about(opened.id, Channel::Sms),
        about(opened.id, Channel::Email),
    ];
    let dropped = about(refused.id, Channel::Slack);
    let resolved_notice = about(to_resolve.id, Channel::InApp);
    let step = AlertStepCommit {
        job: "alert-engine".to_owned(),
        at,
        state: r#"{"last_evaluated":"x"}"#.to_owned(),
        writes: vec![
            AlertWrite::Open(opened.clone()),
            AlertWrite::Enqueue(kept.to_vec()),
            AlertWrite::Open(refused.clone()),
            AlertWrite::Enqueue(vec![dropped.clone()]),
            AlertWrite::Resolve {
                alert_id: to_resolve.id,
                by: "auto".to_owned(),
                at,
            },
            AlertWrite::Resolve {
                alert_id: Uuid::new_v4(),
                by: "auto".to_owned(),
                at,
            },
            AlertWrite::Enqueue(vec![resolved_notice.clone()]),
        ],
    };
    let applied = store.commit_alert_step(&step).await.expect("commit step");
    assert_eq!(applied.opened, [opened.id]);
    assert_eq!(applied.resolved, [to_resolve.id]);
    assert_eq!(applied.enqueued, 3);

    let alert = store.get_alert(opened.id).await.expect("opened alert");
    assert_eq!(
        (alert.status, alert.fired.clone()),
        (AlertStatus::Active, opened.clone())
    );
    assert!(matches!(
        store.get_alert(refused.id).await,
        Err(Error::NotFound { .. })
    ));
    let resolved = store
        .get_alert(to_resolve.id)
        .await
        .expect("resolved alert");
    assert_eq!(
        (
            resolved.status,
            resolved.resolved_by.as_deref(),
            resolved.resolved_at
        ),
        (AlertStatus::Resolved, Some("auto"), Some(at))
    );
    let outbox: Vec<Uuid> = store
        .alert_outbox_entries(opened.id)
        .await
        .expect("outbox")
        .iter()
        .map(|e| e.notification.id)
        .collect();
    assert_eq!(
        outbox.iter().copied().collect::<HashSet<_>>(),
        kept.iter().map(|n| n.id).collect::<HashSet<_>>()
    );
    let entry = store.outbox_entry(kept[0].id).await.expect("entry");
    assert_eq!(entry.next_attempt_at, at, "due at the step's instant");
    assert!(matches!(
        store.outbox_entry(dropped.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(store.outbox_entry(resolved_notice.id).await.is_ok());
    assert_eq!(store.watermark("alert-engine").await.expect("wm"), Some(at));
    assert_eq!(
        store
            .job_state("alert-engine")
            .await
            .expect("state")
            .as_deref(),
        Some(step.state.as_str())
    );

    // A replay (a step re-run after a crash that did commit) writes nothing new.
    let again = store.commit_alert_step(&step).await.expect("replay");
    assert_eq!(again, AlertStepApplied::default());
    let active = store
        .list_alerts(
            &AlertFilter {
                config_id: Some(fresh),
                ..AlertFilter::default()
            },
            &PageRequest::first(10),
        )
        .await
        .expect("list");
    assert_eq!(active.items.len(), 1);
    assert_eq!(store.job_state("never-ran").await.expect("state"), None);
}

/// An import creates and replaces configurations in one transaction, audited as `imported`;
/// one failing write (a name taken, a version moved) leaves everything as it was.
pub async fn config_imports_are_atomic_and_audited(store: &dyn Store) {
    let existing = store
        .create_config(
            Uuid::new_v4(),
            &fixtures::alert_spec("shop", "latency", Severity::Warning),
            "alice",
            now(),
        )
        .await
        .expect("create");
    let mut replacement = existing.spec.clone();
    replacement.severity = Severity::Critical;
    let fresh = ConfigImport {
        id: Uuid::new_v4(),
        spec: fixtures::alert_spec("shop", "errors", Severity::Info),
        replaces: None,
    };
    let later = now() + Duration::minutes(1);
    // The replace expects a version that moved: nothing of the import is written.
    let stale = [
        fresh.clone(),
        ConfigImport {
            id: existing.id,
            spec: replacement.clone(),
            replaces: Some(existing.version + 1),
        },
    ];
    assert!(matches!(
        store.import_configs(&stale, "bob", later).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.get_config(fresh.id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(store.config_audit(fresh.id).await.expect("audit"), []);

    let good = [
        fresh.clone(),
        ConfigImport {
            id: existing.id,
            spec: replacement.clone(),
            replaces: Some(existing.version),
        },
    ];
    let written = store
        .import_configs(&good, "bob", later)
        .await
        .expect("import");
    assert_eq!(written.len(), 2);
    assert_eq!((written[0].id, written[0].version), (fresh.id, 1));
    assert_eq!(
        (written[1].version, written[1].spec.severity),
        (2, Severity::Critical)
    );
    assert_eq!(
        store.get_config(existing.id).await.expect("get"),
        written[1]
    );
    let trail = store.config_audit(existing.id).await.expect("audit");
    assert_eq!(
        trail
            .iter()
            .map(|e| (e.action, e.actor.as_str()))
            .collect::<Vec<_>>(),
        [
            (AuditAction::Created, "alice"),
            (AuditAction::Imported, "bob")
        ]
    );
    let created = store.config_audit(fresh.id).await.expect("audit");
    assert_eq!(created.len(), 1);
    assert_eq!(
        (created[0].action, created[0].before.is_none()),
        (AuditAction::Imported, true)
    );

    // A name taken by another configuration refuses the import.
    let clash = [ConfigImport {
        id: Uuid::new_v4(),
        spec: fixtures::alert_spec("shop", "errors", Severity::Info),
        replaces: None,
    }];
    assert!(matches!(
        store.import_configs(&clash, "bob", later).await,
        Err(Error::Conflict(_))
    ));
}
