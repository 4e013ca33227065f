//! Durability: everything survives dropping and reopening the store, and an event
//! acknowledged by `write_batch` survives the writing process being killed with SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use analytics_core::alert::Severity;
use analytics_core::ports::{
    AlertConfigStore, EventFilter, EventSink, EventStore, JobStore, ProjectStore, RollupStore,
};
use analytics_core::rollup::RollupQuery;
use analytics_core::testkit::fixtures::{self, now, project, t};
use analytics_core::{EventId, Granularity, PageRequest, TimeRange};
use uuid::Uuid;

use analytics_store_sqlite::{SqliteStore, SqliteStoreOptions};

use crate::common::{TempDb, open};

#[tokio::test]
async fn reopening_the_file_keeps_everything() {
    let db = TempDb::new("reopen");
    let events = fixtures::one_of_each_kind(now());
    let rollup = fixtures::rollup(
        Granularity::Hour,
        t("2024-03-10T08:00:00Z"),
        "api.requests",
        &[],
        3.0,
    );
    let config_id = Uuid::new_v4();
    {
        let store = db.open().await;
        store.write_batch(&events).await.expect("write");
        store
            .upsert_rollups(std::slice::from_ref(&rollup))
            .await
            .expect("rollup");
        store
            .create_config(
                config_id,
                &fixtures::alert_spec("shop", "p95", Severity::Warning),
                "a",
                now(),
            )
            .await
            .expect("config");
        store
            .create_project(&fixtures::new_project("shop"))
            .await
            .expect("project");
        store
            .set_watermark("rollup.hour", now())
            .await
            .expect("watermark");
        // Dropped without `close()`: committed data must not depend on a clean shutdown.
    }
    let store = db.open().await;
    for e in &events {
        assert_eq!(
            store
                .get_event(&e.project, e.id)
                .await
                .expect("get")
                .as_ref(),
            Some(e)
        );
    }
    let rows = store
        .query_rollups(&RollupQuery {
            project: project("shop"),
            granularity: Granularity::Hour,
            range: TimeRange::new(t("2024-03-10T00:00:00Z"), t("2024-03-11T00:00:00Z"))
                .expect("range"),
            metrics: vec![],
            dimensions: Default::default(),
            dimension_names: None,
        })
        .await
        .expect("rollups");
    assert_eq!(rows, vec![rollup]);
    assert_eq!(
        store.get_config(config_id).await.expect("config").version,
        1
    );
    assert_eq!(store.list_projects().await.expect("projects").len(), 1);
    assert_eq!(
        store.watermark("rollup.hour").await.expect("wm"),
        Some(now())
    );
    assert_eq!(store.dirty_hours(10).await.expect("dirty").len(), 1);
    store.close().await;
}

/// The environment variable that turns `child_writes_until_killed` into the child writer.
const CHILD_DB: &str = "ANALYTICS_SQLITE_KILL_TEST_DB";
const BATCH: u128 = 50;

fn batch_ids(k: u128) -> impl Iterator<Item = Uuid> {
    (0..BATCH).map(move |i| Uuid::from_u128((k << 32) | i))
}

/// Run as a child process by `acknowledged_events_survive_kill_9`: writes numbered batches
/// and prints `ack K` after batch K is acknowledged, until it is killed. Without the
/// variable it does nothing.
#[tokio::test]
async fn child_writes_until_killed() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let store = open(std::path::Path::new(&path)).await;
    let mut out = std::io::stdout();
    for k in 0u128.. {
        let batch: Vec<_> = batch_ids(k)
            .map(|id| {
                let mut e = fixtures::api_request(now(), "/kill", 200, 1.0);
                e.id = EventId(id);
                e
            })
            .collect();
        store.write_batch(&batch).await.expect("child write");
        writeln!(out, "ack {k}").expect("stdout");
        out.flush().expect("flush");
    }
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9() {
    let db = TempDb::new("kill9");
    kill_9_mid_stream(&db, db.url()).await;
}

/// `synchronous=NORMAL` skips the fsync of each commit; the operating system still holds
/// the WAL when only the process dies, so an acknowledged event survives `kill -9` too.
#[tokio::test]
async fn acknowledged_events_survive_kill_9_with_synchronous_normal() {
    let db = TempDb::new("kill9-normal");
    let url = format!("sqlite://{}?synchronous=normal", db.url());
    let store = open(std::path::Path::new(&url)).await;
    assert_eq!(
        store.options().synchronous,
        analytics_store_sqlite::Synchronous::Normal,
        "the URL's synchronous= is applied"
    );
    store.close().await;
    kill_9_mid_stream(&db, &url).await;
}

/// With the default `Synchronous::Full`, every write transaction (events and the rest)
/// returns only after a sync of the WAL file that covers it; concurrent commits share syncs.
/// `synchronous=normal` never syncs after a commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_syncs_the_wal_after_every_write_and_normal_does_not() {
    let db = TempDb::new("wal-sync");
    let store = open(std::path::Path::new(db.url())).await;
    let before = store.wal_syncs();
    store
        .write_batch(&fixtures::one_of_each_kind(now()))
        .await
        .expect("write");
    assert_eq!(store.wal_syncs(), before + 1, "the batch waited for a sync");
    store.set_watermark("test", now()).await.expect("watermark");
    assert_eq!(
        store.wal_syncs(),
        before + 2,
        "any write transaction is synced"
    );
    // Many writers at once: each returns synced, and syncs are shared.
    let writes: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let e = fixtures::api_request(now() - chrono::Duration::seconds(i), "/c", 200, 1.0);
                store.write_batch(&[e]).await
            })
        })
        .collect();
    for w in writes {
        w.await.expect("join").expect("write");
    }
    let synced = store.wal_syncs() - before - 2;
    assert!((1..=16).contains(&synced), "{synced} syncs for 16 writes");
    assert_eq!(store.event_count().await.expect("count"), 10 + 16);
    store.close().await;

    let normal = open(std::path::Path::new(&format!(
        "sqlite://{}?synchronous=normal",
        db.url()
    )))
    .await;
    normal
        .write_batch(&[fixtures::api_request(now(), "/n", 200, 1.0)])
        .await
        .expect("write");
    assert_eq!(normal.wal_syncs(), 0);
    normal.close().await;
}

#[tokio::test]
async fn an_unknown_synchronous_level_names_the_url() {
    let db = TempDb::new("bad-sync");
    let url = format!("sqlite://{}?synchronous=sometimes", db.url());
    let err = analytics_store_sqlite::SqliteStore::connect(&url, Default::default())
        .await
        .expect_err("refused");
    match err {
        analytics_core::Error::Invalid { field, reason } => {
            assert_eq!(field, "database_url");
            assert_eq!(
                reason,
                "synchronous must be normal, full or extra, not \"sometimes\""
            );
        }
        other => panic!("want Invalid on database_url, got {other:?}"),
    }
}

/// Runs `child_writes_until_killed` on `child_url` (the file of `db`), SIGKILLs it after
/// 20 acknowledged batches, and checks every acknowledged event is in the file.
async fn kill_9_mid_stream(db: &TempDb, child_url: &str) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "durability::child_writes_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, child_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut last_ack = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child");
        if let Some(k) = line.strip_prefix("ack ") {
            last_ack = Some(k.trim().parse::<u128>().expect("batch number"));
            if last_ack >= Some(20) {
                break;
            }
        }
    }
    // SIGKILL: no destructor, no checkpoint, no clean close.
    child.kill().expect("kill child");
    child.wait().expect("reap child");
    let last_ack = last_ack.expect("the child acknowledged batches");

    let store = db.open().await;
    for k in 0..=last_ack {
        for id in batch_ids(k) {
            assert!(
                store
                    .get_event(&project("shop"), EventId(id))
                    .await
                    .expect("get")
                    .is_some(),
                "event {id} of acknowledged batch {k} was lost"
            );
        }
    }
    // Whatever else is there is whole batches (a batch is atomic).
    let n = store.event_count().await.expect("count");
    assert_eq!(
        n % BATCH as u64,
        0,
        "a partial batch was stored: {n} events"
    );
    let page = store
        .query_events(&EventFilter::default(), &PageRequest::first(10))
        .await
        .expect("readable after the crash");
    assert_eq!(page.items.len(), 10);
}

/// Opens `db` with a 100-page WAL bound and `interval` between background checkpoints, and
/// writes `rounds` back-to-back transactions of 100 events, each an hour apart.
async fn write_rounds(db: &TempDb, interval: std::time::Duration, rounds: i64) -> SqliteStore {
    let store = db
        .open_with(SqliteStoreOptions {
            checkpoint_interval: interval,
            wal_autocheckpoint_pages: 100,
            ..SqliteStoreOptions::default()
        })
        .await;
    for round in 0..rounds {
        let end = now() - chrono::Duration::hours(round);
        let events: Vec<_> = (0..100)
            .map(|i| {
                let at = end - chrono::Duration::seconds(i);
                fixtures::api_request(at, &format!("/r{}", i % 50), 200, 1.0)
            })
            .collect();
        store.write_batch(&events).await.expect("write");
    }
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_connection_checkpoints_and_the_wal_stays_bounded() {
    let db = TempDb::new("checkpoint");
    // 200 back-to-back transactions: about 6 MB of WAL without the writer's bound (the
    // background checkpoint alone never finds the WAL fully copied), under 1 MB with it.
    let store = write_rounds(&db, std::time::Duration::from_millis(1), 200).await;
    assert_eq!(store.event_count().await.expect("count"), 200 * 100);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.background_checkpoints() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        store.background_checkpoints() > 0,
        "the background connection checkpointed"
    );
    let wal = std::fs::metadata(format!("{}-wal", db.url()))
        .expect("wal file")
        .len();
    assert!(
        wal < 2 << 20,
        "the WAL is reused from its start instead of growing: {wal} bytes"
    );
    store.close().await;
    // Closing stops the checkpointer first, so the writer is the last connection and
    // SQLite checkpoints and removes the WAL.
    assert!(
        !std::path::Path::new(&format!("{}-wal", db.url())).exists(),
        "the WAL was removed on close"
    );
    let reopened = db.open().await;
    assert_eq!(reopened.event_count().await.expect("count"), 200 * 100);
    reopened.close().await;
}

#[tokio::test]
async fn a_zero_checkpoint_interval_leaves_checkpoints_to_the_writer() {
    let db = TempDb::new("no-bg-checkpoint");
    let store = write_rounds(&db, std::time::Duration::ZERO, 20).await;
    assert_eq!(store.event_count().await.expect("count"), 20 * 100);
    assert_eq!(store.background_checkpoints(), 0);
    store.close().await;
}
