//! An alert-engine step is one transaction: when its last write fails, the alert it opened,
//! the outbox entries before the failure, the watermark and the state are all absent.

use analytics_core::alert::Severity;
use analytics_core::notification::Channel;
use analytics_core::ports::{
    AlertHistoryStore, AlertStepCommit, AlertWrite, JobStore, NotificationOutbox,
};
use analytics_core::testkit::fixtures::{self, now};
use uuid::Uuid;

use crate::support::fresh_pg_with;
use crate::support::test_options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_fails_midway_leaves_no_alert_outbox_entry_or_watermark() {
    let Some((store, url)) = fresh_pg_with(test_options()).await else {
        return;
    };
    // A trigger refuses one poisoned outbox entry, as a constraint or a lost connection would.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.notification->>'title' = 'poison' THEN \
         RAISE EXCEPTION 'poisoned outbox entry'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER refuse_poison BEFORE INSERT ON notification_outbox \
         FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&mut conn)
    .await
    .expect("install trigger");

    let alert = fixtures::new_alert(Uuid::new_v4(), now(), Severity::Critical);
    let mut first = fixtures::notification(Channel::Sms, Severity::Critical);
    first.alert_id = Some(alert.id);
    let mut poison = fixtures::notification(Channel::Email, Severity::Critical);
    poison.alert_id = Some(alert.id);
    poison.title = "poison".to_owned();
    let step = AlertStepCommit {
        job: "alert-engine".to_owned(),
        at: now(),
        state: "{}".to_owned(),
        writes: vec![
            AlertWrite::Open(alert.clone()),
            AlertWrite::Enqueue(vec![first.clone()]),
            AlertWrite::Enqueue(vec![poison]),
        ],
    };
    assert!(store.commit_alert_step(&step).await.is_err());
    assert!(store.get_alert(alert.id).await.is_err(), "no alert");
    assert!(
        store.outbox_entry(first.id).await.is_err(),
        "no outbox entry"
    );
    assert_eq!(store.watermark("alert-engine").await.expect("wm"), None);
    assert_eq!(store.job_state("alert-engine").await.expect("state"), None);

    // Without the poison the same step commits whole.
    let mut step = step;
    step.writes.pop();
    let applied = store.commit_alert_step(&step).await.expect("commit");
    assert_eq!((applied.opened, applied.enqueued), (vec![alert.id], 1));
    assert!(store.outbox_entry(first.id).await.is_ok());
    assert_eq!(
        store.watermark("alert-engine").await.expect("wm"),
        Some(now())
    );
}
