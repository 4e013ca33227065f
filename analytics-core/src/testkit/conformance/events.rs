//! Contracts of `EventSink` and `EventStore`.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::event::{Event, EventKind};
use crate::ids::EventId;
use crate::page::PageRequest;
use crate::ports::{EventFilter, Store, WriteOutcome};
use crate::testkit::fixtures::{self, now, project, t};
use crate::time::TimeRange;

async fn all_events(store: &dyn Store, filter: &EventFilter) -> Vec<Event> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query_events(filter, &PageRequest::new(1000, cursor).expect("page"))
            .await
            .expect("query_events");
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn ids(events: &[Event]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// A batch is inserted once; re-sending it reports every event duplicate and stores nothing.
pub async fn events_are_inserted_once_and_resent_events_are_duplicates(store: &dyn Store) {
    let batch: Vec<Event> = (0..5)
        .map(|i| fixtures::api_request(now() - Duration::minutes(i), "/a", 200, 10.0))
        .collect();
    let first = store.write_batch(&batch).await.expect("first write");
    assert_eq!(first.outcomes, vec![WriteOutcome::Inserted; 5]);
    assert_eq!((first.inserted(), first.duplicates()), (5, 0));
    let again = store.write_batch(&batch).await.expect("second write");
    assert_eq!(
        again.outcomes,
        vec![WriteOutcome::Duplicate; 5],
        "a re-sent batch must be all duplicates"
    );
    // A batch mixing old and new events reports each correctly, in order.
    let fresh = fixtures::api_request(now(), "/b", 201, 3.0);
    let mixed = vec![batch[0].clone(), fresh.clone(), batch[4].clone()];
    let report = store.write_batch(&mixed).await.expect("mixed write");
    assert_eq!(
        report.outcomes,
        [
            WriteOutcome::Duplicate,
            WriteOutcome::Inserted,
            WriteOutcome::Duplicate
        ]
    );
    let stored = all_events(store, &EventFilter::default()).await;
    assert_eq!(stored.len(), 6, "each event is stored exactly once");
}

/// The same id twice in one batch: the first is inserted, the second is a duplicate.
pub async fn duplicates_within_one_batch_are_reported(store: &dyn Store) {
    let a = fixtures::api_request(now(), "/a", 200, 1.0);
    let b = fixtures::api_request(now(), "/b", 200, 2.0);
    let mut a2 = a.clone();
    a2.payload = b.payload.clone(); // same id, different content: still a duplicate
    let report = store
        .write_batch(&[a.clone(), b.clone(), a2])
        .await
        .expect("write");
    assert_eq!(
        report.outcomes,
        [
            WriteOutcome::Inserted,
            WriteOutcome::Inserted,
            WriteOutcome::Duplicate
        ]
    );
    let got = store
        .get_event(&a.project, a.id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(got.route(), Some("/a"), "the first occurrence wins");
    assert_eq!(all_events(store, &EventFilter::default()).await.len(), 2);
}

/// Dedup is on `(project, id)`: the same id in two projects is two events.
pub async fn event_ids_are_unique_per_project(store: &dyn Store) {
    let a = fixtures::api_request(now(), "/a", 200, 1.0);
    let mut other = a.clone();
    other.project = project("other");
    let report = store
        .write_batch(&[a.clone(), other.clone()])
        .await
        .expect("write");
    assert_eq!(
        report.outcomes,
        [WriteOutcome::Inserted, WriteOutcome::Inserted]
    );
    assert!(
        store
            .get_event(&project("other"), a.id)
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        store
            .get_event(&project("nobody"), a.id)
            .await
            .expect("get")
            .is_none()
    );
}

/// An empty batch writes nothing and reports nothing.
pub async fn an_empty_batch_is_fine(store: &dyn Store) {
    let report = store.write_batch(&[]).await.expect("empty write");
    assert!(report.outcomes.is_empty());
}

/// Every kind, every optional field and odd JSON survive storage unchanged.
pub async fn events_round_trip_exactly(store: &dyn Store) {
    let at = t("2024-03-10T11:59:58.123456Z");
    let events = fixtures::one_of_each_kind(at);
    store.write_batch(&events).await.expect("write");
    for e in &events {
        let got = store
            .get_event(&e.project, e.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(&got, e, "{} must round-trip", e.kind);
    }
    let listed = all_events(store, &EventFilter::default()).await;
    assert_eq!(listed.len(), events.len());
    for e in &listed {
        assert!(
            events.contains(e),
            "listed event differs from what was written: {e:?}"
        );
    }
}

/// Each filter field selects exactly what [`EventFilter::matches`] selects.
pub async fn event_filters_select_exactly_the_matching_events(store: &dyn Store) {
    let base = t("2024-03-10T10:00:00Z");
    let mut events = fixtures::one_of_each_kind(base);
    events.push(fixtures::api_request(
        base + Duration::minutes(5),
        "/api/v1/products/:id",
        200,
        5.0,
    ));
    events.push(fixtures::api_request(
        base + Duration::minutes(90),
        "/api/v1/products/:id",
        404,
        7.0,
    ));
    events.push(fixtures::ml_job(
        base + Duration::minutes(10),
        "descriptions",
        "gemini",
        true,
        900.0,
    ));
    events.push(fixtures::ml_job(
        base + Duration::minutes(11),
        "3d",
        "replicate",
        true,
        9000.0,
    ));
    events.push(fixtures::order(
        base + Duration::minutes(12),
        "love-hurts",
        40.0,
    ));
    let mut other_project = fixtures::api_request(base, "/api/v1/orders", 200, 1.0);
    other_project.project = project("other");
    events.push(other_project);
    let mut with_user = fixtures::event_at(
        json!({"kind": "page_view", "occurred_at": base.to_rfc3339(), "user_id": "user-2",
               "session_id": "sess-2", "correlation_id": "corr-x", "payload": {"path": "/"}}),
        base,
    );
    with_user.source = Some("ios".into());
    events.push(with_user);
    store.write_batch(&events).await.expect("write");

    let range = TimeRange::new(base, base + Duration::minutes(11)).expect("range");
    let filters = [
        EventFilter {
            project: Some(project("shop")),
            ..Default::default()
        },
        EventFilter {
            project: Some(project("other")),
            ..Default::default()
        },
        EventFilter {
            kinds: vec![EventKind::ApiRequest],
            ..Default::default()
        },
        EventFilter {
            kinds: vec![EventKind::MlJob, EventKind::Order],
            ..Default::default()
        },
        EventFilter {
            kinds: vec![EventKind::Custom("newsletter.signup".into())],
            ..Default::default()
        },
        EventFilter {
            range: Some(range),
            ..Default::default()
        },
        EventFilter {
            provider: Some("gemini".into()),
            ..Default::default()
        },
        EventFilter {
            provider: Some("tripo".into()),
            ..Default::default()
        },
        EventFilter {
            route: Some("/api/v1/products/:id".into()),
            ..Default::default()
        },
        EventFilter {
            route: Some("/x".into()),
            ..Default::default()
        },
        EventFilter {
            collection: Some("love-hurts".into()),
            ..Default::default()
        },
        EventFilter {
            collection: Some("signature".into()),
            ..Default::default()
        },
        EventFilter {
            status: Some("404".into()),
            ..Default::default()
        },
        EventFilter {
            status: Some("failed".into()),
            ..Default::default()
        },
        EventFilter {
            correlation_id: Some("corr-x".into()),
            ..Default::default()
        },
        EventFilter {
            user_id: Some("user-2".into()),
            ..Default::default()
        },
        EventFilter {
            session_id: Some("sess-1".into()),
            ..Default::default()
        },
        EventFilter {
            project: Some(project("shop")),
            kinds: vec![EventKind::ApiRequest],
            range: Some(range),
            route: Some("/api/v1/products/:id".into()),
            status: Some("200".into()),
            ..Default::default()
        },
        EventFilter {
            route: Some("/nowhere".into()),
            ..Default::default()
        },
    ];
    for f in &filters {
        let mut want: Vec<EventId> = events
            .iter()
            .filter(|e| f.matches(e))
            .map(|e| e.id)
            .collect();
        let mut got = ids(&all_events(store, f).await);
        want.sort();
        got.sort();
        assert_eq!(got, want, "filter {f:?}");
    }
    // The reference filter itself is not vacuous.
    assert_eq!(events.iter().filter(|e| filters[6].matches(e)).count(), 1);
    assert_eq!(events.iter().filter(|e| filters[12].matches(e)).count(), 1);
}

/// Walking every page returns every event exactly once, newest first, also when many share
/// a timestamp, and across projects (a listing without a project merges them).
pub async fn pages_never_skip_or_repeat_an_event(store: &dyn Store) {
    let base = t("2024-03-10T09:00:00Z");
    // 23 events over 5 distinct timestamps, so ties must be broken by id, in 3 projects.
    let events: Vec<Event> = (0..23)
        .map(|i| {
            let mut e = fixtures::api_request(base + Duration::seconds(i % 5), "/p", 200, i as f64);
            e.project = project(["shop", "other", "third"][(i % 3) as usize]);
            e
        })
        .collect();
    store.write_batch(&events).await.expect("write");
    for limit in [1u32, 4, 7, 23, 50] {
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = store
                .query_events(
                    &EventFilter::default(),
                    &PageRequest::new(limit, cursor).expect("page"),
                )
                .await
                .expect("query");
            assert!(page.items.len() <= limit as usize);
            pages += 1;
            assert!(pages <= 30, "pagination does not terminate");
            seen.extend(page.items.iter().map(|e| (e.occurred_at, e.id)));
            match page.next_cursor {
                Some(c) => {
                    assert_eq!(
                        page.items.len(),
                        limit as usize,
                        "only a full page may have a next page"
                    );
                    cursor = Some(c);
                }
                None => break,
            }
        }
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "limit {limit}: an event was repeated"
        );
        assert_eq!(
            seen.len(),
            events.len(),
            "limit {limit}: an event was skipped"
        );
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            seen, sorted,
            "limit {limit}: not newest first by (occurred_at, id)"
        );
        assert_eq!(
            pages,
            (events.len() as u32).div_ceil(limit).max(1) as usize,
            "limit {limit}: page count"
        );
    }
}

/// Events arriving between pages (newer, or at the cursor's timestamp) neither shift nor
/// duplicate the pages already being walked.
pub async fn pages_stay_stable_while_newer_events_arrive(store: &dyn Store) {
    let base = t("2024-03-10T09:00:00Z");
    let events: Vec<Event> = (0..10)
        .map(|i| fixtures::api_request(base + Duration::seconds(i), "/p", 200, 1.0))
        .collect();
    store.write_batch(&events).await.expect("write");
    let req = PageRequest::new(4, None).expect("page");
    let first = store
        .query_events(&EventFilter::default(), &req)
        .await
        .expect("page 1");
    store
        .write_batch(&[
            fixtures::api_request(base + Duration::seconds(30), "/p", 200, 1.0),
            fixtures::api_request(base + Duration::seconds(9), "/p", 200, 1.0),
        ])
        .await
        .expect("write between pages");
    let mut seen = ids(&first.items);
    let mut cursor = first.next_cursor;
    while let Some(c) = cursor {
        let page = store
            .query_events(
                &EventFilter::default(),
                &PageRequest::new(4, Some(c)).expect("page"),
            )
            .await
            .expect("next page");
        seen.extend(ids(&page.items));
        cursor = page.next_cursor;
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event was repeated");
    for e in &events {
        assert!(
            seen.contains(&e.id),
            "event at {} was skipped",
            e.occurred_at
        );
    }
}

async fn walk(store: &dyn Store, filter: &EventFilter, limit: u32) -> Vec<Event> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .query_events(filter, &PageRequest::new(limit, cursor).expect("page"))
            .await
            .expect("query_events");
        assert!(page.items.len() <= limit as usize);
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// Listings over events spread across many days (and long gaps without any) are complete
/// and newest first, with and without a time range, through every page and when only the
/// oldest event matches. (A store that partitions by day must stay answerable however
/// many days it holds.)
pub async fn listings_span_many_days_newest_first(store: &dyn Store) {
    let newest_day = t("2024-03-10T00:00:00Z");
    let days: Vec<i64> = (0..40).chain([60, 200, 399]).collect();
    let mut events = Vec::new();
    for &d in &days {
        let day = newest_day - Duration::days(d);
        let route = if d == 399 { "/oldest" } else { "/r" };
        events.push(fixtures::api_request(
            day + Duration::hours(1),
            route,
            200,
            1.0,
        ));
        events.push(fixtures::api_request(
            day + Duration::hours(23),
            "/r",
            200,
            1.0,
        ));
        if d % 3 == 0 {
            let mut other = fixtures::api_request(day + Duration::hours(12), "/r", 200, 1.0);
            other.project = project("other");
            events.push(other);
        }
    }
    for chunk in events.chunks(50) {
        store.write_batch(chunk).await.expect("write");
    }
    let newest_first = |filter: &EventFilter| {
        let mut want: Vec<&Event> = events.iter().filter(|e| filter.matches(e)).collect();
        want.sort_by_key(|e| std::cmp::Reverse((e.occurred_at, e.id.0)));
        want.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };

    let all = EventFilter::default();
    for limit in [1000, 7] {
        assert_eq!(
            ids(&walk(store, &all, limit).await),
            newest_first(&all),
            "unbounded listing in pages of {limit}"
        );
    }
    let first = store
        .query_events(&all, &PageRequest::new(1, None).expect("page"))
        .await
        .expect("first page");
    assert_eq!(ids(&first.items), newest_first(&all)[..1]);
    assert!(first.next_cursor.is_some());

    let other = EventFilter {
        project: Some(project("other")),
        ..Default::default()
    };
    assert_eq!(ids(&walk(store, &other, 5).await), newest_first(&other));

    let ranged = EventFilter {
        range: Some(
            TimeRange::new(
                newest_day - Duration::days(200),
                newest_day - Duration::days(30),
            )
            .expect("range"),
        ),
        ..Default::default()
    };
    let want = newest_first(&ranged);
    assert_eq!(want.len(), 26, "days 31-39, 60 and 200 of both projects");
    assert_eq!(ids(&walk(store, &ranged, 9).await), want);

    let oldest = EventFilter {
        route: Some("/oldest".into()),
        ..Default::default()
    };
    let page = store
        .query_events(&oldest, &PageRequest::new(10, None).expect("page"))
        .await
        .expect("oldest");
    assert_eq!(ids(&page.items), newest_first(&oldest));
    assert_eq!(page.items.len(), 1);
    assert!(page.next_cursor.is_none());
}

/// Retention deletes events older than the cutoff, only in the given project.
pub async fn retention_deletes_only_older_events_of_the_project(store: &dyn Store) {
    let cutoff = t("2024-03-03T00:00:00Z");
    let old = fixtures::api_request(cutoff - Duration::microseconds(1), "/old", 200, 1.0);
    let edge = fixtures::api_request(cutoff, "/edge", 200, 1.0);
    let mut old_other = fixtures::api_request(cutoff - Duration::days(1), "/old", 200, 1.0);
    old_other.project = project("other");
    store
        .write_batch(&[old.clone(), edge.clone(), old_other.clone()])
        .await
        .expect("write");

    let deleted = store
        .delete_events_before(Some(&project("shop")), cutoff)
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    assert!(
        store
            .get_event(&old.project, old.id)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .get_event(&edge.project, edge.id)
            .await
            .expect("get")
            .is_some(),
        "the cutoff is exclusive"
    );
    assert!(
        store
            .get_event(&old_other.project, old_other.id)
            .await
            .expect("get")
            .is_some()
    );

    let deleted = store
        .delete_events_before(None, cutoff)
        .await
        .expect("delete all");
    assert_eq!(deleted, 1);
    assert!(
        store
            .get_event(&old_other.project, old_other.id)
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        store
            .delete_events_before(None, cutoff)
            .await
            .expect("again"),
        0
    );
}

/// Inserting marks `(project, hour)` dirty; duplicates do not; a clear at a stale version
/// leaves the mark.
pub async fn inserts_mark_their_hour_dirty_until_cleared_at_that_version(store: &dyn Store) {
    assert!(store.dirty_hours(10).await.expect("dirty").is_empty());
    let h1 = t("2024-03-10T08:00:00Z");
    let h2 = t("2024-03-10T10:00:00Z");
    let a = fixtures::api_request(h1 + Duration::minutes(59), "/a", 200, 1.0);
    let b = fixtures::api_request(h2, "/a", 200, 1.0);
    store
        .write_batch(&[a.clone(), b.clone()])
        .await
        .expect("write");
    let dirty = store.dirty_hours(10).await.expect("dirty");
    assert_eq!(
        dirty.iter().map(|d| d.hour).collect::<Vec<_>>(),
        [h1, h2],
        "oldest hour first"
    );
    assert!(dirty.iter().all(|d| d.project == project("shop")));
    assert_eq!(store.dirty_hours(1).await.expect("limit").len(), 1);

    // Duplicates do not touch the marker.
    store
        .write_batch(std::slice::from_ref(&a))
        .await
        .expect("dup");
    assert_eq!(store.dirty_hours(10).await.expect("dirty"), dirty);

    // An insert after the read makes the read version stale.
    store
        .write_batch(&[fixtures::api_request(
            h1 + Duration::minutes(1),
            "/a",
            200,
            1.0,
        )])
        .await
        .expect("late insert");
    let cleared = store.clear_dirty_hours(&dirty).await.expect("clear");
    assert_eq!(
        cleared, 1,
        "only the hour without a newer insert is cleared"
    );
    let left = store.dirty_hours(10).await.expect("dirty");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].hour, h1);
    assert_ne!(left[0].version, dirty[0].version);
    assert_eq!(store.clear_dirty_hours(&left).await.expect("clear"), 1);
    assert!(store.dirty_hours(10).await.expect("dirty").is_empty());
}

/// An hour's version changes on every insert (not on a duplicate) and survives the clear of
/// its dirty marker; hours without inserts and other projects' hours have none.
pub async fn hour_versions_change_on_insert_and_survive_clears(store: &dyn Store) {
    let h1 = t("2024-03-10T08:00:00Z");
    let h2 = t("2024-03-10T09:00:00Z");
    let versions = |hours: Vec<DateTime<Utc>>| async move {
        store
            .hour_versions(&project("shop"), &hours)
            .await
            .expect("hour versions")
    };
    assert!(
        versions(vec![h1, h2]).await.is_empty(),
        "nothing inserted yet"
    );
    let a = fixtures::api_request(h1 + Duration::minutes(5), "/a", 200, 1.0);
    store
        .write_batch(std::slice::from_ref(&a))
        .await
        .expect("write");
    let first = versions(vec![h1, h2]).await;
    assert_eq!(first.len(), 1, "only the hour written to has a version");
    assert_eq!(first[0].0, h1);

    store.write_batch(&[a]).await.expect("duplicate");
    assert_eq!(
        versions(vec![h1]).await,
        first,
        "a duplicate changes nothing"
    );

    let dirty = store.dirty_hours(10).await.expect("dirty");
    assert_eq!(store.clear_dirty_hours(&dirty).await.expect("clear"), 1);
    assert_eq!(
        versions(vec![h1]).await,
        first,
        "the version survives the clear"
    );

    store
        .write_batch(&[fixtures::api_request(
            h1 + Duration::minutes(7),
            "/a",
            200,
            1.0,
        )])
        .await
        .expect("late insert");
    let second = versions(vec![h1]).await;
    assert_eq!(second.len(), 1);
    assert_ne!(
        second[0].1, first[0].1,
        "an insert after the clear: new version"
    );
    let dirty = store.dirty_hours(10).await.expect("dirty");
    store.clear_dirty_hours(&dirty).await.expect("clear");
    assert_eq!(versions(vec![h1]).await, second);

    assert!(
        store
            .hour_versions(&project("other"), &[h1])
            .await
            .expect("other project")
            .is_empty(),
        "versions are per project"
    );
}
