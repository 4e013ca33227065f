//! Concurrent writers: many tasks on one store, and two store instances on one file, never
//! fail with "database is locked"; concurrent outbox claimers never share an entry.

use std::collections::HashSet;

use analytics_core::alert::Severity;
use analytics_core::notification::Channel;
use analytics_core::ports::{EventSink, NotificationOutbox};
use analytics_core::testkit::fixtures::{self, now};
use chrono::Duration;

use crate::common::TempDb;

fn batch(n: usize) -> Vec<analytics_core::Event> {
    (0..n)
        .map(|i| fixtures::api_request(now() - Duration::seconds(i as i64), "/c", 200, 1.0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_write_batches_all_succeed() {
    let db = TempDb::new("concurrent");
    let store = db.open().await;
    let other = db.open().await; // a second instance, as a second process would be
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = if t % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..15 {
                s.write_batch(&batch(40)).await?;
            }
            Ok::<_, analytics_core::Error>(())
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("no write may fail");
    }
    assert_eq!(store.event_count().await.expect("count"), 8 * 15 * 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_an_entry() {
    let db = TempDb::new("claims");
    let a = db.open().await;
    let b = db.open().await;
    let notes: Vec<_> = (0..60)
        .map(|i| {
            fixtures::notification(Channel::Email, [Severity::Info, Severity::Critical][i % 2])
        })
        .collect();
    a.enqueue(&notes, now()).await.expect("enqueue");
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                let claimed = s.claim_due(now(), 3, Duration::seconds(60)).await?;
                got.extend(claimed.into_iter().map(|e| e.notification.id));
            }
            Ok::<_, analytics_core::Error>(got)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task").expect("claim"));
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an entry was handed out twice");
    assert_eq!(
        all.len(),
        60,
        "6 claimers x 5 claims x 3 = 90 slots cover all 60 entries"
    );
}
