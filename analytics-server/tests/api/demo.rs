//! `analytics-server demo --url`: the demo data through the real HTTP ingest API.

use analytics_core::PageRequest;
use analytics_core::ProjectId;
use analytics_core::ports::EventFilter;
use analytics_core::project::{ApiKeyRecord, ApiKeySecret, Project, ProjectSettings};
use analytics_server::demo::{DemoOptions, commerce, post, traffic};
use chrono::{Duration, DurationRound, Utc};

use crate::helpers::RunningServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_data_goes_through_the_http_ingest_api() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let server = RunningServer::start(&url, |_| {}).await;
    let project = ProjectId::parse("shop").unwrap();
    server
        .store
        .create_project(&Project {
            id: project.clone(),
            name: "shop".into(),
            settings: ProjectSettings::default(),
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    let secret = ApiKeySecret::generate().unwrap();
    server
        .store
        .create_api_key(&ApiKeyRecord {
            id: uuid::Uuid::new_v4(),
            project: project.clone(),
            name: "demo".into(),
            prefix: secret.prefix(),
            hash: secret.hash(),
            created_at: Utc::now(),
            revoked_at: None,
            last_used_at: None,
        })
        .await
        .unwrap();
    let o = DemoOptions {
        project: project.clone(),
        end: Utc::now().duration_trunc(Duration::hours(1)).unwrap(),
        days: 1,
        per_hour: 20,
        seed: 3,
    };
    let expected = traffic(&o).len() + commerce(&o).len();
    let p = post(&server.base, secret.expose(), &o).await.unwrap();
    assert_eq!(p.sent as usize, expected);
    assert_eq!((p.accepted as usize, p.rejected), (expected, 0), "{p:?}");
    // Sent again: every event is a duplicate (the demo's ids are seeded).
    let again = post(&server.base, secret.expose(), &o).await.unwrap();
    assert_eq!((again.accepted, again.duplicates as usize), (0, expected));
    let stored = server
        .store
        .query_events(
            &EventFilter {
                project: Some(project),
                ..EventFilter::default()
            },
            &PageRequest::first(1000),
        )
        .await
        .unwrap();
    assert!(!stored.items.is_empty());
    let wrong = post(&server.base, "ak_not_a_key", &o).await;
    assert!(
        wrong.is_err(),
        "a bad key stops the run with the server's answer"
    );
}
