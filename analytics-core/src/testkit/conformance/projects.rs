//! Contracts of `ProjectStore`.

use chrono::Duration;
use uuid::Uuid;

use crate::error::Error;
use crate::event::Event;
use crate::ports::EventFilter;
use crate::ports::Store;
use crate::project::{ApiKeySecret, ProjectSettings, RateLimitSettings};
use crate::sampling::{SamplingSettings, SamplingStrategy, SourceSampling, SourceSettings};
use crate::testkit::fixtures::{self, now, project};

/// Project ids are unique; settings update; listing is by id.
pub async fn projects_are_unique_and_settings_update(store: &dyn Store) {
    let shop = fixtures::new_project("shop");
    store.create_project(&shop).await.expect("create");
    assert!(matches!(
        store.create_project(&shop).await,
        Err(Error::Conflict(_))
    ));
    store
        .create_project(&fixtures::new_project("analytics"))
        .await
        .expect("create");
    assert_eq!(
        store.get_project(&project("shop")).await.expect("get"),
        shop
    );
    let ids: Vec<_> = store
        .list_projects()
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, [project("analytics"), project("shop")]);
    let settings = ProjectSettings {
        retention_days: 30,
        sample_rate: 0.25,
        currency: Some("EUR".into()),
        session_timeout_minutes: 30,
        allowed_origins: vec!["https://shop.example.com".into()],
        rate_limit: RateLimitSettings {
            per_key_per_second: Some(50),
            per_ip_per_minute: None,
        },
        sampling: SamplingSettings {
            strategy: SamplingStrategy::Deterministic,
            rate: 0.25,
            windows: Vec::new(),
            kinds: [("page_view".to_owned(), 0.5)].into(),
        },
        sources: [(
            "web".to_owned(),
            SourceSettings {
                description: Some("storefront".into()),
                sampling: Some(SourceSampling {
                    rate: Some(0.1),
                    kinds: Default::default(),
                }),
            },
        )]
        .into(),
    };
    let updated = store
        .update_project_settings(&project("shop"), &settings)
        .await
        .expect("update");
    assert_eq!(updated.settings, settings);
    assert_eq!(
        store
            .get_project(&project("shop"))
            .await
            .expect("get")
            .settings,
        settings
    );
    assert!(matches!(
        store.get_project(&project("nope")).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store
            .update_project_settings(&project("nope"), &settings)
            .await,
        Err(Error::NotFound { .. })
    ));
}

/// Keys need a project, are found by hash (revoked ones too, marked inactive), list oldest
/// first, and revocation keeps the first time.
pub async fn api_keys_are_found_by_hash_and_revoked_once(store: &dyn Store) {
    let (_, orphan) = fixtures::api_key("shop", now());
    assert!(matches!(
        store.create_api_key(&orphan).await,
        Err(Error::NotFound { .. })
    ));
    store
        .create_project(&fixtures::new_project("shop"))
        .await
        .expect("project");
    store
        .create_project(&fixtures::new_project("other"))
        .await
        .expect("project");

    let (secret, key) = fixtures::api_key("shop", now());
    let (_, second) = fixtures::api_key("shop", now() + Duration::seconds(1));
    let (_, foreign) = fixtures::api_key("other", now());
    for k in [&key, &second, &foreign] {
        store.create_api_key(k).await.expect("create key");
    }
    let mut dup = second.clone();
    dup.id = Uuid::new_v4();
    assert!(
        matches!(store.create_api_key(&dup).await, Err(Error::Conflict(_))),
        "hashes are unique"
    );

    let found = store
        .api_key_by_hash(&secret.hash())
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found, key);
    assert!(found.is_active());
    let stranger = ApiKeySecret::generate().expect("key");
    assert_eq!(
        store
            .api_key_by_hash(&stranger.hash())
            .await
            .expect("lookup"),
        None
    );

    let listed = store.list_api_keys(&project("shop")).await.expect("list");
    assert_eq!(listed, vec![key.clone(), second.clone()]);

    let t1 = now() + Duration::hours(1);
    let revoked = store.revoke_api_key(key.id, t1).await.expect("revoke");
    assert_eq!(revoked.revoked_at, Some(t1));
    let again = store
        .revoke_api_key(key.id, t1 + Duration::hours(1))
        .await
        .expect("revoke again");
    assert_eq!(
        again.revoked_at,
        Some(t1),
        "the first revocation time is kept"
    );
    let found = store
        .api_key_by_hash(&secret.hash())
        .await
        .expect("lookup")
        .expect("still found");
    assert!(!found.is_active(), "a revoked key is not active");
    assert!(matches!(
        store.revoke_api_key(Uuid::new_v4(), t1).await,
        Err(Error::NotFound { .. })
    ));
}

/// Key use is recorded (the latest time is kept); an unknown key is `NotFound`.
pub async fn api_key_use_is_recorded(store: &dyn Store) {
    store
        .create_project(&fixtures::new_project("shop"))
        .await
        .expect("project");
    let (secret, key) = fixtures::api_key("shop", now());
    store.create_api_key(&key).await.expect("key");
    let t1 = now() + Duration::minutes(5);
    store.touch_api_key(key.id, t1).await.expect("touch");
    store
        .touch_api_key(key.id, t1 - Duration::minutes(1))
        .await
        .expect("touch earlier");
    let found = store
        .api_key_by_hash(&secret.hash())
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.last_used_at, Some(t1), "the latest use is kept");
    assert!(matches!(
        store.touch_api_key(Uuid::new_v4(), t1).await,
        Err(Error::NotFound { .. })
    ));
}

/// Deleting a project removes its events, keys and itself, and leaves other projects alone.
pub async fn deleting_a_project_removes_its_data_only(store: &dyn Store) {
    for slug in ["shop", "other"] {
        store
            .create_project(&fixtures::new_project(slug))
            .await
            .expect("project");
    }
    let at = now() - Duration::hours(1);
    let mut events: Vec<Event> = Vec::new();
    for slug in ["shop", "other"] {
        let mut e = fixtures::api_request(at, "/x", 200, 5.0);
        e.project = project(slug);
        events.push(e);
    }
    store.write_batch(&events).await.expect("write");
    // Rolled up once: the hour keeps a version after its marker is cleared.
    let dirty = store.dirty_hours(10).await.expect("dirty");
    store.clear_dirty_hours(&dirty).await.expect("clear");
    let hour = crate::time::Granularity::Hour.bucket_start(at);
    let (_, key) = fixtures::api_key("shop", now());
    store.create_api_key(&key).await.expect("key");
    let (other_secret, other_key) = fixtures::api_key("other", now());
    store.create_api_key(&other_key).await.expect("key");

    store
        .delete_project(&project("shop"))
        .await
        .expect("delete");
    assert!(matches!(
        store.get_project(&project("shop")).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_project(&project("shop")).await,
        Err(Error::NotFound { .. })
    ));
    let count = |slug: &'static str| async move {
        let filter = EventFilter {
            project: Some(project(slug)),
            ..EventFilter::default()
        };
        store
            .query_events(&filter, &crate::PageRequest::new(100, None).expect("page"))
            .await
            .expect("query")
            .items
            .len()
    };
    assert_eq!(count("shop").await, 0);
    assert_eq!(count("other").await, 1);
    assert!(
        store
            .hour_versions(&project("shop"), &[hour])
            .await
            .expect("versions")
            .is_empty(),
        "no hour version outlives the project's events (readers would keep them)"
    );
    assert!(
        store
            .list_api_keys(&project("shop"))
            .await
            .expect("keys")
            .is_empty()
    );
    assert!(
        store
            .api_key_by_hash(&other_secret.hash())
            .await
            .expect("lookup")
            .is_some()
    );
    // The slug may be used again, empty.
    store
        .create_project(&fixtures::new_project("shop"))
        .await
        .expect("recreate");
    assert_eq!(count("shop").await, 0);
}
