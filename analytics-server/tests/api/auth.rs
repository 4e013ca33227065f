//! Authentication and authorisation: 401 with `WWW-Authenticate`, 403 for missing roles.

use analytics_core::ports::ProjectStore;
use analytics_server::{JwtSettings, Role, Secret};
use chrono::Utc;
use poem::http::StatusCode;

use crate::helpers::{SECRET, TestApp, batch, page_view};

fn assert_401(r: &crate::helpers::Resp) {
    r.assert_error(StatusCode::UNAUTHORIZED, None);
    assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
}

#[tokio::test]
async fn missing_auth_is_401() {
    let app = TestApp::new();
    assert_401(&app.post_events(&batch(vec![page_view(1)]), None).await);
    assert_401(&app.get_events("", None).await);
    assert_401(&app.post_events(&batch(vec![]), Some("Basic abc")).await);
}

#[tokio::test]
async fn wrong_role_is_403() {
    let app = TestApp::new();
    let viewer = format!("Bearer {}", app.token(&[Role::BusinessViewer]));
    let r = app
        .post_events(&batch(vec![page_view(1)]), Some(&viewer))
        .await;
    r.assert_error(StatusCode::FORBIDDEN, None);
    let ingest = format!("Bearer {}", app.token(&[Role::Ingest]));
    let r = app
        .post_events(&batch(vec![page_view(1)]), Some(&ingest))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Querying events needs admin.
    app.get_events("", Some(&ingest))
        .await
        .assert_error(StatusCode::FORBIDDEN, None);
    let (key, _) = app.api_key("shop").await;
    app.get_events("", Some(&format!("Bearer {key}")))
        .await
        .assert_error(StatusCode::FORBIDDEN, None);
}

#[tokio::test]
async fn expired_tampered_and_unsigned_tokens_are_401() {
    let app = TestApp::new();
    let jwt = JwtSettings::new(Secret::new(SECRET));
    let now = Utc::now().timestamp();
    let expired = jwt.issue("a", &[Role::Admin], now - 7200, 3600).unwrap();
    assert_401(&app.get_events("", Some(&format!("Bearer {expired}"))).await);

    let good = jwt.issue("a", &[Role::Ingest], now, 3600).unwrap();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    // Swap the payload for one granting admin, keeping the signature.
    let forged = jwt.issue("a", &[Role::Admin], now, 3600).unwrap();
    parts[1] = forged.split('.').nth(1).unwrap().to_owned();
    let tampered = parts.join(".");
    assert_401(
        &app.get_events("", Some(&format!("Bearer {tampered}")))
            .await,
    );

    let other_key = JwtSettings::new(Secret::new("another-secret-another-secret-another-secret"))
        .issue("a", &[Role::Admin], now, 3600)
        .unwrap();
    assert_401(
        &app.get_events("", Some(&format!("Bearer {other_key}")))
            .await,
    );

    use base64_free::b64;
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64(format!(r#"{{"sub":"a","exp":{},"roles":["admin"]}}"#, now + 3600).as_bytes());
    for none in [format!("{header}.{claims}."), format!("{header}.{claims}")] {
        assert_401(&app.get_events("", Some(&format!("Bearer {none}"))).await);
    }
    assert_401(&app.get_events("", Some("Bearer garbage")).await);
}

#[tokio::test]
async fn revoked_and_unknown_api_keys_are_401() {
    // Without the key cache a revocation applies to the very next request.
    let app = TestApp::with_api_key_ttl(std::time::Duration::ZERO);
    let (key, rec) = app.api_key("shop").await;
    let r = app
        .post_with_header(&batch(vec![page_view(1)]), "x-api-key", &key)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    app.store.revoke_api_key(rec.id, Utc::now()).await.unwrap();
    assert_401(
        &app.post_with_header(&batch(vec![page_view(2)]), "x-api-key", &key)
            .await,
    );
    assert_401(
        &app.post_events(&batch(vec![page_view(2)]), Some(&format!("Bearer {key}")))
            .await,
    );
    assert_401(
        &app.post_with_header(&batch(vec![page_view(2)]), "x-api-key", "ak_unknown")
            .await,
    );
}

#[tokio::test]
async fn a_cached_api_key_is_rechecked_after_its_ttl() {
    let app = TestApp::with_api_key_ttl(std::time::Duration::from_millis(300));
    let (key, rec) = app.api_key("shop").await;
    let body = |n| batch(vec![page_view(n)]);
    let ok = app.post_with_header(&body(1), "x-api-key", &key).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    app.store.revoke_api_key(rec.id, Utc::now()).await.unwrap();
    // Within the TTL the cached key is still trusted (no store query per request).
    let cached = app.post_with_header(&body(2), "x-api-key", &key).await;
    assert_eq!(cached.status, StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_401(&app.post_with_header(&body(3), "x-api-key", &key).await);
}

/// A tiny URL-safe base64 encoder without padding, to forge `alg: none` tokens.
mod base64_free {
    pub(crate) fn b64(input: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
