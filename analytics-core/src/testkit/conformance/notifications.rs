//! Contracts of `NotificationOutbox`, `InAppStore` and `PreferenceStore`.

use chrono::Duration;
use uuid::Uuid;

use crate::alert::Severity;
use crate::error::Error;
use crate::ids::UserId;
use crate::notification::{
    AttemptOutcome, Channel, DeliveryAttempt, NotificationPreferences, OutboxStatus,
    PreferenceSubject,
};
use crate::page::PageRequest;
use crate::ports::Store;
use crate::testkit::fixtures::{self, now};

/// Enqueueing the same notification twice keeps one entry.
pub async fn outbox_enqueue_is_idempotent(store: &dyn Store) {
    let a = fixtures::notification(Channel::Email, Severity::Warning);
    let b = fixtures::notification(Channel::Slack, Severity::Warning);
    assert_eq!(
        store
            .enqueue(&[a.clone(), b.clone()], now())
            .await
            .expect("enqueue"),
        2
    );
    assert_eq!(
        store
            .enqueue(std::slice::from_ref(&a), now())
            .await
            .expect("again"),
        0
    );
    let entry = store.outbox_entry(a.id).await.expect("entry");
    assert_eq!(entry.notification, a, "the notification round-trips");
    assert_eq!(
        (entry.status, entry.attempts, entry.next_attempt_at),
        (OutboxStatus::Pending, 0, now())
    );
    assert_eq!(entry.created_at, now());
    let claimed = store
        .claim_due(now(), 10, Duration::seconds(30))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2, "exactly one entry per notification");
    assert!(matches!(
        store.outbox_entry(Uuid::new_v4()).await,
        Err(Error::NotFound { .. })
    ));
}

/// An alert's outbox entries are listed by its id, oldest first, with their delivery
/// state; other alerts' entries are not; an alert without entries lists none.
pub async fn outbox_entries_are_listed_per_alert(store: &dyn Store) {
    let alert = Uuid::new_v4();
    let mut first = fixtures::notification(Channel::Email, Severity::Warning);
    first.alert_id = Some(alert);
    let mut second = fixtures::notification(Channel::Slack, Severity::Warning);
    second.alert_id = Some(alert);
    let other = fixtures::notification(Channel::Email, Severity::Warning);
    store
        .enqueue(std::slice::from_ref(&first), now())
        .await
        .expect("enqueue");
    store
        .enqueue(&[second.clone(), other], now() + Duration::seconds(1))
        .await
        .expect("enqueue");
    store
        .record_attempt(
            first.id,
            &DeliveryAttempt {
                at: now() + Duration::seconds(2),
                outcome: AttemptOutcome::Delivered { provider_id: None },
                duration_ms: 12,
            },
        )
        .await
        .expect("attempt");
    let listed = store.alert_outbox_entries(alert).await.expect("list");
    let ids: Vec<Uuid> = listed.iter().map(|e| e.notification.id).collect();
    assert_eq!(ids, [first.id, second.id]);
    assert_eq!(
        (listed[0].status, listed[0].attempts),
        (OutboxStatus::Sent, 1)
    );
    assert_eq!(
        (listed[1].status, listed[1].attempts),
        (OutboxStatus::Pending, 0)
    );
    assert!(
        store
            .alert_outbox_entries(Uuid::new_v4())
            .await
            .expect("list")
            .is_empty()
    );
}

/// A claim leases entries: a second claimer does not get them until the lease ends;
/// critical entries come first; entries not yet due stay.
pub async fn outbox_claims_lease_entries_and_critical_go_first(store: &dyn Store) {
    let info = fixtures::notification(Channel::InApp, Severity::Info);
    let warning = fixtures::notification(Channel::Email, Severity::Warning);
    let critical = fixtures::notification(Channel::Sms, Severity::Critical);
    let future = fixtures::notification(Channel::Sms, Severity::Critical);
    store
        .enqueue(
            &[info.clone(), warning.clone()],
            now() - Duration::seconds(5),
        )
        .await
        .expect("enqueue");
    store
        .enqueue(std::slice::from_ref(&critical), now())
        .await
        .expect("enqueue");
    store
        .enqueue(std::slice::from_ref(&future), now() + Duration::minutes(5))
        .await
        .expect("enqueue");

    let lease = Duration::seconds(30);
    let first = store.claim_due(now(), 2, lease).await.expect("claim");
    let ids: Vec<_> = first.iter().map(|e| e.notification.id).collect();
    assert_eq!(
        ids,
        [critical.id, warning.id],
        "critical first, then the oldest due"
    );
    assert!(
        first.iter().all(|e| e.next_attempt_at == now() + lease),
        "the lease is recorded"
    );

    let second = store
        .claim_due(now(), 10, lease)
        .await
        .expect("claim again");
    assert_eq!(
        second.iter().map(|e| e.notification.id).collect::<Vec<_>>(),
        [info.id],
        "leased entries are not handed out twice"
    );
    assert!(
        store
            .claim_due(now() + Duration::seconds(29), 10, lease)
            .await
            .expect("claim")
            .is_empty()
    );

    // After the lease ends (the claimer died), entries come back; the future one is due too.
    let after = store
        .claim_due(now() + Duration::minutes(6), 10, lease)
        .await
        .expect("claim after lease");
    let mut got: Vec<_> = after.iter().map(|e| e.notification.id).collect();
    got.sort();
    let mut want = vec![info.id, warning.id, critical.id, future.id];
    want.sort();
    assert_eq!(got, want);
}

/// Attempts count up and move entries: failure with a retry time -> pending at that time;
/// delivery -> sent (never claimed again); failure without retry -> failed.
pub async fn outbox_attempts_move_entries_to_sent_pending_or_failed(store: &dyn Store) {
    let n = fixtures::notification(Channel::Slack, Severity::Critical);
    let doomed = fixtures::notification(Channel::Email, Severity::Warning);
    store
        .enqueue(&[n.clone(), doomed.clone()], now())
        .await
        .expect("enqueue");
    store
        .claim_due(now(), 10, Duration::seconds(30))
        .await
        .expect("claim");

    let retry_at = now() + Duration::seconds(10);
    let failed = DeliveryAttempt {
        at: now() + Duration::seconds(1),
        outcome: AttemptOutcome::Failed {
            error: "503 from slack".into(),
            retry_at: Some(retry_at),
        },
        duration_ms: 120,
    };
    let e = store
        .record_attempt(n.id, &failed)
        .await
        .expect("record failure");
    assert_eq!(
        (e.status, e.attempts, e.next_attempt_at),
        (OutboxStatus::Pending, 1, retry_at)
    );
    assert_eq!(e.last_error.as_deref(), Some("503 from slack"));
    assert!(
        store
            .claim_due(retry_at - Duration::seconds(1), 10, Duration::seconds(30))
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store
        .claim_due(retry_at, 10, Duration::seconds(30))
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);

    let ok = DeliveryAttempt {
        at: retry_at + Duration::seconds(1),
        outcome: AttemptOutcome::Delivered {
            provider_id: Some("msg-1".into()),
        },
        duration_ms: 80,
    };
    let e = store
        .record_attempt(n.id, &ok)
        .await
        .expect("record delivery");
    assert_eq!(
        (e.status, e.attempts, e.sent_at),
        (OutboxStatus::Sent, 2, Some(ok.at))
    );
    assert_eq!(
        store.delivery_attempts(n.id).await.expect("attempts"),
        vec![failed, ok]
    );

    let give_up = DeliveryAttempt {
        at: now() + Duration::seconds(2),
        outcome: AttemptOutcome::Failed {
            error: "550 no such user".into(),
            retry_at: None,
        },
        duration_ms: 40,
    };
    let e = store
        .record_attempt(doomed.id, &give_up)
        .await
        .expect("record permanent failure");
    assert_eq!((e.status, e.attempts), (OutboxStatus::Failed, 1));
    assert!(
        store
            .claim_due(now() + Duration::days(1), 10, Duration::seconds(30))
            .await
            .expect("claim")
            .is_empty(),
        "sent and failed entries are never claimed"
    );
    assert!(matches!(
        store.record_attempt(Uuid::new_v4(), &give_up).await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        store
            .delivery_attempts(Uuid::new_v4())
            .await
            .expect("none")
            .is_empty()
    );
}

/// In-app notifications are per user, newest first, idempotent on id; users mark only their
/// own as read, and the first read time is kept.
pub async fn in_app_notifications_list_and_mark_read_per_user(store: &dyn Store) {
    let alice = UserId::parse("alice").expect("user");
    let bob = UserId::parse("bob").expect("user");
    let mut mine = Vec::new();
    for i in 0..5 {
        let n = fixtures::in_app("alice", now() + Duration::seconds(i));
        assert!(store.create_in_app(&n).await.expect("create"));
        mine.push(n);
    }
    assert!(
        !store.create_in_app(&mine[0]).await.expect("again"),
        "creation is idempotent"
    );
    let theirs = fixtures::in_app("bob", now());
    store.create_in_app(&theirs).await.expect("create");

    let page = store
        .list_in_app(&alice, false, &PageRequest::first(3))
        .await
        .expect("list");
    assert_eq!(
        page.items.iter().map(|n| n.id).collect::<Vec<_>>(),
        [mine[4].id, mine[3].id, mine[2].id]
    );
    let rest = store
        .list_in_app(
            &alice,
            false,
            &PageRequest::new(3, page.next_cursor).expect("page"),
        )
        .await
        .expect("list");
    assert_eq!(
        rest.items.iter().map(|n| n.id).collect::<Vec<_>>(),
        [mine[1].id, mine[0].id]
    );
    assert_eq!(rest.next_cursor, None);
    assert_eq!(rest.items[1], mine[0], "round-trips");

    let t1 = now() + Duration::minutes(1);
    let changed = store
        .mark_in_app_read(&alice, &[mine[0].id, mine[1].id, theirs.id], t1)
        .await
        .expect("mark");
    assert_eq!(changed, 2, "another user's notification is not touched");
    assert_eq!(
        store
            .mark_in_app_read(&alice, &[mine[0].id], t1 + Duration::minutes(1))
            .await
            .expect("again"),
        0
    );
    assert_eq!(store.unread_in_app(&alice).await.expect("unread"), 3);
    assert_eq!(store.unread_in_app(&bob).await.expect("unread"), 1);
    let unread = store
        .list_in_app(&alice, true, &PageRequest::first(10))
        .await
        .expect("unread list");
    assert_eq!(unread.items.len(), 3);
    let all = store
        .list_in_app(&alice, false, &PageRequest::first(10))
        .await
        .expect("list");
    let first = all
        .items
        .iter()
        .find(|n| n.id == mine[0].id)
        .expect("present");
    assert_eq!(first.read_at, Some(t1), "the first read time is kept");
    let got = store
        .get_in_app(&alice, mine[0].id)
        .await
        .expect("get")
        .expect("alice's own");
    assert_eq!(got.read_at, Some(t1));
    assert_eq!(
        store.get_in_app(&alice, theirs.id).await.expect("get"),
        None,
        "another user's notification is not visible"
    );
    assert_eq!(
        store
            .get_in_app(&bob, uuid::Uuid::new_v4())
            .await
            .expect("get"),
        None
    );
}

/// Preferences are stored per subject and replaced whole.
pub async fn preferences_are_replaced_whole(store: &dyn Store) {
    let user = PreferenceSubject::User(UserId::parse("alice").expect("user"));
    let team = PreferenceSubject::Team("sre".into());
    assert_eq!(store.preferences(&user).await.expect("none"), None);
    let prefs = NotificationPreferences {
        subject: user.clone(),
        channels: vec![
            (Severity::Warning, vec![Channel::Email]),
            (Severity::Critical, vec![Channel::Sms, Channel::InApp]),
        ],
        email: Some("alice@example.com".parse().expect("email")),
        phone: Some("+15551234567".parse().expect("phone")),
        slack_webhook: Some(
            "https://hooks.slack.com/services/T/B/X"
                .parse()
                .expect("url"),
        ),
        mute_non_critical: false,
        quiet_hours: Some(
            crate::notification::QuietHours::parse("22:00", "07:30", "Europe/Berlin")
                .expect("quiet hours"),
        ),
        members: Vec::new(),
        updated_at: now(),
    };
    store.put_preferences(&prefs).await.expect("put");
    assert_eq!(
        store.preferences(&user).await.expect("get"),
        Some(prefs.clone())
    );
    assert_eq!(
        store.preferences(&team).await.expect("team"),
        None,
        "subjects are separate"
    );
    let team_prefs = NotificationPreferences {
        subject: team.clone(),
        members: vec![
            UserId::parse("alice").expect("user"),
            UserId::parse("bob").expect("user"),
        ],
        quiet_hours: None,
        ..prefs.clone()
    };
    store.put_preferences(&team_prefs).await.expect("team put");
    assert_eq!(
        store.preferences(&team).await.expect("team get"),
        Some(team_prefs)
    );

    let replaced = NotificationPreferences {
        channels: vec![],
        email: None,
        phone: None,
        slack_webhook: None,
        mute_non_critical: true,
        quiet_hours: None,
        members: Vec::new(),
        updated_at: now() + Duration::minutes(1),
        ..prefs
    };
    store.put_preferences(&replaced).await.expect("replace");
    assert_eq!(store.preferences(&user).await.expect("get"), Some(replaced));
}
