//! `EXPLAIN QUERY PLAN` checks: the main queries use the indexes docs/stores/sqlite.md says
//! they use, on a database with planner statistics (as `connect` and retention keep them).
//! Run with `--nocapture` to print every plan.

use analytics_core::ports::{EventFilter, EventSink};
use analytics_core::testkit::fixtures::{self, now, project};
use analytics_core::{Cursor, EventKind, PageRequest, TimeRange};
use chrono::Duration;
use sqlx::Row;
use sqlx::sqlite::SqliteArguments;

use crate::events::page_query;
use crate::sql::{Arg, Where};
use crate::{SqliteStore, SqliteStoreOptions};

async fn plan(store: &SqliteStore, sql: &str, args: SqliteArguments) -> String {
    let rows = sqlx::query_with(
        sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")),
        args,
    )
    .fetch_all(store.reader())
    .await
    .expect("explain");
    rows.iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Asserts that the plan of `sql` uses `index` and sorts nothing (unless `sorts`).
async fn check(
    store: &SqliteStore,
    name: &str,
    sql: &str,
    args: SqliteArguments,
    index: &str,
    sorts: bool,
) {
    let p = plan(store, sql, args).await;
    eprintln!("{name}: {p}");
    let uses = if index.is_empty() {
        !p.contains("INDEX")
    } else {
        p.contains(&format!("INDEX {index} "))
    };
    assert!(uses, "{name}: want {index:?}, got {p}");
    assert_eq!(p.contains("TEMP B-TREE"), sorts, "{name}: sorting: {p}");
}

async fn check_events(
    store: &SqliteStore,
    name: &str,
    filter: EventFilter,
    index: &str,
    sorts: bool,
) {
    let page = PageRequest::new(
        100,
        Some(Cursor {
            at: now(),
            id: uuid::Uuid::nil(),
        }),
    )
    .expect("page");
    let (sql, args) = page_query(&filter, &page).expect("sql");
    check(store, name, &sql, args, index, sorts).await;
}

fn args(values: impl IntoIterator<Item = Arg>) -> SqliteArguments {
    Where::default().arguments(values).expect("args")
}

/// A store with a realistic mix (mostly API requests, some orders, few ML jobs) and
/// statistics, as a running server has after its first retention pass.
async fn analyzed_store() -> SqliteStore {
    let store = SqliteStore::connect("sqlite::memory:", SqliteStoreOptions::default())
        .await
        .expect("open");
    let mut events = Vec::new();
    for i in 0..5000i64 {
        let at = now() - Duration::minutes(i);
        let mut e = match i % 10 {
            0..=6 => fixtures::api_request(at, ["/a", "/b", "/c"][(i % 3) as usize], 200, 1.0),
            7 | 8 => fixtures::order(at, ["black-rose", "signature"][(i % 2) as usize], 1.0),
            _ => fixtures::ml_job(at, "3d", ["gemini", "tripo"][(i % 2) as usize], true, 1.0),
        };
        e.user_id = Some(format!("user-{}", i % 300));
        e.session_id = Some(format!("sess-{}", i % 900));
        events.push(e);
    }
    store.write_batch(&events).await.expect("write");
    sqlx::query("ANALYZE")
        .execute(&store.inner.writer)
        .await
        .expect("analyze");
    store
}

#[tokio::test]
async fn event_queries_use_their_indexes() {
    let store = analyzed_store().await;
    let day = TimeRange::new(now() - Duration::hours(24), now()).expect("range");
    let shop = || Some(project("shop"));
    let cases: Vec<(&str, EventFilter, &str, bool)> = vec![
        (
            "project, rare kind, 24h",
            EventFilter {
                project: shop(),
                kinds: vec![EventKind::MlJob],
                range: Some(day),
                ..Default::default()
            },
            "ix_events_project_kind_time",
            false,
        ),
        (
            "project, kind",
            EventFilter {
                project: shop(),
                kinds: vec![EventKind::Order],
                ..Default::default()
            },
            "ix_events_project_kind_time",
            false,
        ),
        (
            "project, provider, 24h",
            EventFilter {
                project: shop(),
                provider: Some("gemini".into()),
                range: Some(day),
                ..Default::default()
            },
            "ix_events_provider",
            false,
        ),
        (
            "project, route, status, 24h",
            EventFilter {
                project: shop(),
                route: Some("/a".into()),
                status: Some("500".into()),
                range: Some(day),
                ..Default::default()
            },
            "ix_events_route",
            false,
        ),
        (
            "project, collection",
            EventFilter {
                project: shop(),
                collection: Some("signature".into()),
                ..Default::default()
            },
            "ix_events_collection",
            false,
        ),
        // Few rows per id: sorting them is cheap.
        (
            "correlation id",
            EventFilter {
                correlation_id: Some("c".into()),
                ..Default::default()
            },
            "ix_events_correlation",
            true,
        ),
    ];
    for (name, filter, index, sorts) in cases {
        check_events(&store, name, filter, index, sorts).await;
    }
    check(
        &store,
        "get event",
        "SELECT payload FROM analytics_events WHERE project = ? AND id = ?",
        args([Arg::Text("shop".into()), Arg::Id(uuid::Uuid::nil())]),
        "sqlite_autoindex_analytics_events_1",
        false,
    )
    .await;
    check(
        &store,
        "retention, one project and kind",
        crate::events::RETENTION_SQL,
        args([
            Arg::Text("shop".into()),
            Arg::Text("api_request".into()),
            Arg::Int(0),
            Arg::Int(10),
        ]),
        "ix_events_project_kind_time",
        false,
    )
    .await;
    // Listings over several kinds or projects, and retention, find the projects and kinds
    // by seeking once per value in `ix_events_project_kind_time`.
    check(
        &store,
        "projects with events",
        crate::events::PROJECTS_SQL,
        args([]),
        "ix_events_project_kind_time",
        false,
    )
    .await;
    check(
        &store,
        "kinds of a project",
        crate::events::KINDS_SQL,
        args([Arg::Text("shop".into())]),
        "ix_events_project_kind_time",
        false,
    )
    .await;
}

/// Listings no single index lists in order: each scan reads `ix_events_project_kind_time`
/// in order (from the index alone without row filters), and the page's rows are then read by
/// their `seq`.
#[tokio::test]
async fn merged_listings_scan_the_kind_index_per_kind() {
    let store = analyzed_store().await;
    let day = TimeRange::new(now() - Duration::hours(24), now()).expect("range");
    let cases: Vec<(&str, EventFilter, usize, bool)> = vec![
        (
            "project",
            EventFilter {
                project: Some(project("shop")),
                ..Default::default()
            },
            3,
            true,
        ),
        (
            "project, 24h",
            EventFilter {
                project: Some(project("shop")),
                range: Some(day),
                ..Default::default()
            },
            3,
            true,
        ),
        (
            "project, two kinds",
            EventFilter {
                project: Some(project("shop")),
                kinds: vec![EventKind::Order, EventKind::MlJob],
                ..Default::default()
            },
            2,
            true,
        ),
        (
            "project, user, 24h",
            EventFilter {
                project: Some(project("shop")),
                user_id: Some("user-7".into()),
                range: Some(day),
                ..Default::default()
            },
            3,
            false,
        ),
        // Only API requests and ML jobs carry a status here.
        (
            "project, status",
            EventFilter {
                project: Some(project("shop")),
                status: Some("500".into()),
                ..Default::default()
            },
            2,
            false,
        ),
        ("all projects", EventFilter::default(), 3, true),
    ];
    let page = PageRequest::new(
        100,
        Some(Cursor {
            at: now(),
            id: uuid::Uuid::nil(),
        }),
    )
    .expect("page");
    let floor = Some(Cursor {
        at: now() - Duration::hours(1),
        id: uuid::Uuid::nil(),
    });
    for (name, filter, n, covering) in cases {
        let mut conn = store.reader().acquire().await.expect("connection");
        let scans = crate::events::merged_scans(&mut conn, &filter)
            .await
            .expect("scans");
        drop(conn);
        assert_eq!(scans.len(), n, "{name}: {scans:?}");
        if covering {
            // One statement: every scan a covering range, the page's rows by rowid.
            let (sql, args) = crate::events::merged_query(&scans, &page).expect("sql");
            let p = plan(&store, &sql, args).await;
            eprintln!("{name}, one statement: {p}");
            assert_eq!(
                p.matches("COVERING INDEX ix_events_project_kind_time (project=? AND kind=?")
                    .count(),
                n,
                "{name}: {p}"
            );
            assert!(p.contains("INTEGER PRIMARY KEY (rowid=?)"), "{name}: {p}");
        }
        for (i, scan) in scans.iter().enumerate() {
            let (sql, args) = crate::events::keys_query(scan, &page, floor).expect("sql");
            let p = plan(&store, &sql, args).await;
            eprintln!("{name}, scan {i}: {p}");
            assert!(
                p.contains("INDEX ix_events_project_kind_time (project=? AND kind=?"),
                "{name}: {p}"
            );
            assert_eq!(p.contains("COVERING INDEX"), covering, "{name}: {p}");
            // The floor and the cursor bound the scan, not just filter it.
            assert!(
                p.contains("occurred_at>? AND occurred_at<?)"),
                "{name}: {p}"
            );
            assert!(!p.contains("TEMP B-TREE"), "{name}: {p}");
        }
    }
    // With row filters, the page's rows are read by `seq` after the scans.
    let p = plan(
        &store,
        "SELECT seq, payload FROM analytics_events WHERE seq IN (?, ?)",
        args([Arg::Int(1), Arg::Int(2)]),
    )
    .await;
    assert!(p.contains("INTEGER PRIMARY KEY (rowid=?)"), "{p}");
}

/// On a fresh database without statistics the listings read the same indexes.
#[tokio::test]
async fn listings_need_no_statistics() {
    let store = SqliteStore::connect("sqlite::memory:", SqliteStoreOptions::default())
        .await
        .expect("open");
    let day = TimeRange::new(now() - Duration::hours(24), now()).expect("range");
    let f = EventFilter {
        project: Some(project("shop")),
        kinds: vec![EventKind::ApiRequest],
        range: Some(day),
        ..Default::default()
    };
    check_events(
        &store,
        "fresh: project, kind, 24h",
        f,
        "ix_events_project_kind_time",
        false,
    )
    .await;
    let f = EventFilter {
        project: Some(project("shop")),
        provider: Some("tripo".into()),
        ..Default::default()
    };
    check_events(
        &store,
        "fresh: project, provider",
        f,
        "ix_events_provider",
        false,
    )
    .await;
}

#[tokio::test]
async fn other_queries_use_their_indexes() {
    let store = analyzed_store().await;
    check(
        &store,
        "rollups of a range",
        "SELECT digest FROM analytics_rollups WHERE project = ? AND granularity = ? \
         AND bucket_start >= ? AND bucket_start < ? AND metric = ? AND dimension_names = ? \
         ORDER BY bucket_start, metric",
        args([
            Arg::Text("shop".into()),
            Arg::Text("hour".into()),
            Arg::Int(0),
            Arg::Int(1),
            Arg::Text("api.requests".into()),
            Arg::Text("[]".into()),
        ]),
        "sqlite_autoindex_analytics_rollups_1",
        false,
    )
    .await;
    check(
        &store,
        "dirty hours",
        "SELECT hour, project, version FROM rollup_dirty_hours ORDER BY hour, project LIMIT ?",
        args([Arg::Int(10)]),
        "", // the table is its primary key (hour, project): read in order
        false,
    )
    .await;
    check(
        &store,
        "alerts of a project",
        "SELECT id FROM alert_history WHERE project = ? AND (triggered_at, id) < (?, ?) \
         ORDER BY triggered_at DESC, id DESC LIMIT ?",
        args([
            Arg::Text("shop".into()),
            Arg::Int(0),
            Arg::Id(uuid::Uuid::nil()),
            Arg::Int(10),
        ]),
        "ix_alert_history_project_time",
        false,
    )
    .await;
    check(
        &store,
        "last fired",
        "SELECT max(triggered_at) FROM alert_history WHERE config_id = ?",
        args([Arg::Id(uuid::Uuid::nil())]),
        "ix_alert_history_config_time",
        false,
    )
    .await;
    check(
        &store,
        "due outbox entries",
        "SELECT id FROM notification_outbox WHERE status = 'pending' AND next_attempt_at <= ? \
         ORDER BY severity_rank DESC, next_attempt_at, created_at, id LIMIT ?",
        args([Arg::Int(0), Arg::Int(10)]),
        "ix_outbox_due",
        true,
    )
    .await;
    check(
        &store,
        "in-app of a user",
        "SELECT id FROM in_app_notifications WHERE user_id = ? AND (created_at, id) < (?, ?) \
         ORDER BY created_at DESC, id DESC LIMIT ?",
        args([
            Arg::Text("alice".into()),
            Arg::Int(0),
            Arg::Id(uuid::Uuid::nil()),
            Arg::Int(10),
        ]),
        "ix_in_app_user_time",
        false,
    )
    .await;
    check(
        &store,
        "unread count",
        "SELECT count(*) FROM in_app_notifications WHERE user_id = ? AND read_at IS NULL",
        args([Arg::Text("alice".into())]),
        "ix_in_app_unread",
        false,
    )
    .await;
}
