//! Notification routes in-process: in-app notifications (list, unread count, mark read,
//! read all; only the caller's) and preferences (validation naming the field, round trips,
//! admin-only views of other users and teams).

use analytics_core::ports::InAppStore;
use analytics_core::testkit::fixtures;
use analytics_server::Role;
use chrono::{Duration, Utc};
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};

fn bearer_as(app: &TestApp, sub: &str, roles: &[Role]) -> String {
    format!(
        "Bearer {}",
        app.jwt
            .issue(sub, roles, Utc::now().timestamp(), 3600)
            .unwrap()
    )
}

async fn get(app: &TestApp, path: &str, auth: &str) -> Resp {
    Resp::from(
        app.client
            .get(path)
            .header("authorization", auth)
            .send()
            .await,
    )
    .await
}

async fn post(app: &TestApp, path: &str, auth: &str) -> Resp {
    Resp::from(
        app.client
            .post(path)
            .header("authorization", auth)
            .send()
            .await,
    )
    .await
}

async fn put(app: &TestApp, path: &str, auth: &str, body: &Value) -> Resp {
    Resp::from(
        app.client
            .put(path)
            .header("authorization", auth)
            .body_json(body)
            .send()
            .await,
    )
    .await
}

const LIST: &str = "/api/v1/analytics/notifications";
const PREFS: &str = "/api/v1/analytics/notifications/preferences";

#[tokio::test]
async fn in_app_notifications_are_listed_counted_and_marked_only_for_the_caller() {
    let app = TestApp::new();
    let t0 = Utc::now() - Duration::minutes(10);
    let mut mine = Vec::new();
    for i in 0..3 {
        let n = fixtures::in_app("alice", t0 + Duration::seconds(i));
        app.store.create_in_app(&n).await.unwrap();
        mine.push(n);
    }
    let theirs = fixtures::in_app("bob", t0);
    app.store.create_in_app(&theirs).await.unwrap();
    // Any role reads its own notifications.
    let alice = bearer_as(&app, "alice", &[Role::BusinessViewer]);
    let bob = bearer_as(&app, "bob", &[Role::Ingest]);

    let r = get(&app, &format!("{LIST}?limit=2"), &alice).await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["unread"], 3);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], mine[2].id.to_string(), "newest first");
    for key in [
        "id",
        "alert_id",
        "severity",
        "title",
        "body",
        "created_at",
        "read_at",
    ] {
        assert!(items[0].get(key).is_some(), "{key} missing: {:#}", items[0]);
    }
    let cursor = r.body["next_cursor"].as_str().unwrap().to_owned();
    let r = get(&app, &format!("{LIST}?limit=2&cursor={cursor}"), &alice).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["next_cursor"], Value::Null);

    let r = post(&app, &format!("{LIST}/{}/read", mine[0].id), &alice).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = post(&app, &format!("{LIST}/{}/read", mine[0].id), &alice).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "marking again is fine");
    post(&app, &format!("{LIST}/{}/read", theirs.id), &alice)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
    post(
        &app,
        &format!("{LIST}/{}/read", uuid::Uuid::new_v4()),
        &alice,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, None);
    let r = get(&app, &format!("{LIST}?unread_only=true"), &alice).await;
    assert_eq!(r.body["unread"], 2);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);

    let r = post(&app, &format!("{LIST}/read-all"), &alice).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = get(&app, LIST, &alice).await;
    assert_eq!(r.body["unread"], 0);
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["read_at"].is_string())
    );
    // Bob's is untouched and only his.
    let r = get(&app, LIST, &bob).await;
    assert_eq!(r.body["unread"], 1);
    assert_eq!(r.body["items"][0]["id"], theirs.id.to_string());
    let r = Resp::from(app.client.get(LIST).send().await).await;
    r.assert_error(StatusCode::UNAUTHORIZED, None);
}

#[tokio::test]
async fn bad_preferences_are_400_naming_the_field() {
    let app = TestApp::new();
    let me = bearer_as(&app, "carol", &[Role::BusinessViewer]);
    for (body, field) in [
        (json!({"email": "not-an-address"}), "email"),
        (json!({"phone": "555-1234"}), "phone"),
        (json!({"phone": "+0123456789"}), "phone"),
        (
            json!({"channels": {"warning": ["email", "pager"]}}),
            "channels.warning[1]",
        ),
        (
            json!({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Base"}}),
            "quiet_hours.timezone",
        ),
        (
            json!({"quiet_hours": {"start": "7pm", "end": "07:00", "timezone": "UTC"}}),
            "quiet_hours.start",
        ),
        (
            json!({"slack_webhook": "http://hooks.example.com/x"}),
            "slack_webhook",
        ),
    ] {
        put(&app, PREFS, &me, &body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
}

#[tokio::test]
async fn preferences_round_trip_and_admins_manage_users_and_teams() {
    let app = TestApp::new();
    let me = bearer_as(&app, "carol", &[Role::BusinessViewer]);
    let r = get(&app, PREFS, &me).await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert_eq!(r.body["channels"]["info"], json!(["in_app"]), "defaults");
    assert_eq!(r.body["email"], Value::Null);
    let body = json!({
        "channels": {"warning": ["email"], "critical": ["sms", "in_app"]},
        "email": "carol@example.com",
        "phone": "+14155550100",
        "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}
    });
    let r = put(&app, PREFS, &me, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let r = get(&app, PREFS, &me).await;
    assert_eq!(r.body["channels"]["warning"], json!(["email"]));
    assert_eq!(r.body["channels"]["critical"], json!(["sms", "in_app"]));
    assert_eq!(r.body["channels"]["info"], json!(["in_app"]));
    assert_eq!(r.body["email"], "carol@example.com");
    assert_eq!(r.body["phone"], "+14155550100");
    assert_eq!(
        r.body["quiet_hours"],
        json!({"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"})
    );

    // Other users' and teams' preferences are the admin's.
    let users = format!("{PREFS}/users/carol");
    get(&app, &users, &me)
        .await
        .assert_error(StatusCode::FORBIDDEN, None);
    let admin = app.admin();
    let r = get(&app, &users, &admin).await;
    assert_eq!(r.body["email"], "carol@example.com");
    let team = format!("{PREFS}/teams/sre");
    put(&app, &team, &me, &json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, None);
    let r = put(
        &app,
        &team,
        &admin,
        &json!({"members": ["carol", "dave"], "email": "sre@example.com"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    let r = get(&app, &team, &admin).await;
    assert_eq!(r.body["members"], json!(["carol", "dave"]));
    assert_eq!(r.body["email"], "sre@example.com");
}
