//! Contracts of `ProjectStore`.

use chrono::Duration;
use uuid::Uuid;

use crate::error::Error;
use crate::ports::Store;
use crate::project::{ApiKeySecret, ProjectSettings};
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
