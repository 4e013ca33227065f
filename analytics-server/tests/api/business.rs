//! ML and business routes: roles (business_viewer on business only), parameter errors
//! naming their field, empty windows as zeros and nulls, figures of ingested data, the
//! comparison windows and deltas, and project scoping.

use analytics_core::ProjectId;
use analytics_server::Role;
use chrono::{Duration, Utc};
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp, batch};

const ML: [&str; 5] = [
    "/api/v1/analytics/ml/overview",
    "/api/v1/analytics/ml/3d",
    "/api/v1/analytics/ml/descriptions",
    "/api/v1/analytics/ml/assets",
    "/api/v1/analytics/ml/providers",
];

const BUSINESS: [&str; 5] = [
    "/api/v1/analytics/business/overview",
    "/api/v1/analytics/business/sales",
    "/api/v1/analytics/business/products",
    "/api/v1/analytics/business/collections",
    "/api/v1/analytics/business/funnel",
];

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

#[tokio::test]
async fn business_viewer_reads_business_routes_and_not_ml() {
    let app = TestApp::new();
    let viewer = format!("Bearer {}", app.token(&[Role::BusinessViewer]));
    let ingest = format!("Bearer {}", app.token(&[Role::Ingest]));
    let admin = app.admin();
    for path in BUSINESS {
        let r = get(&app, path, &viewer).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:#}", r.body);
        let r = get(&app, path, &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:#}", r.body);
        get(&app, path, &ingest)
            .await
            .assert_error(StatusCode::FORBIDDEN, None);
        let anon = Resp::from(app.client.get(path).send().await).await;
        anon.assert_error(StatusCode::UNAUTHORIZED, None);
    }
    for path in ML {
        get(&app, path, &viewer)
            .await
            .assert_error(StatusCode::FORBIDDEN, None);
        let r = get(&app, path, &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:#}", r.body);
    }
}

#[tokio::test]
async fn bad_filters_name_their_field() {
    let app = TestApp::new();
    let admin = app.admin();
    let cases = [
        ("business/overview", "currency=XYZ", "currency"),
        ("business/overview", "currency=dollars", "currency"),
        ("business/overview", "compare=foo", "compare"),
        ("business/sales", "granularity=minute", "granularity"),
        ("business/sales", "compare=same_period_last_year", "compare"),
        ("business/products", "sort=price", "sort"),
        ("business/products", "limit=0", "limit"),
        ("business/collections", "range=2d", "range"),
        ("business/funnel", "collection=%20-%20", "collection"),
        ("ml/overview", "pipeline=video", "pipeline"),
        ("ml/providers", "pipeline=3D", "pipeline"),
        ("ml/3d", "project=Not%20A%20Slug", "project"),
    ];
    for (route, query, field) in cases {
        get(&app, &format!("/api/v1/analytics/{route}?{query}"), &admin)
            .await
            .assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
}

#[tokio::test]
async fn an_empty_window_gives_zeros_and_nulls() {
    let app = TestApp::new();
    let admin = app.admin();
    let o = get(&app, "/api/v1/analytics/business/overview", &admin).await;
    assert_eq!(
        (
            &o.body["revenue"],
            &o.body["orders"],
            &o.body["aov"],
            &o.body["units"]
        ),
        (&json!(0.0), &json!(0), &Value::Null, &json!(0)),
        "{:#}",
        o.body
    );
    assert_eq!(o.body["currency"], "USD");
    assert_eq!(o.body["compare"], Value::Null);
    let f = get(&app, "/api/v1/analytics/business/funnel", &admin).await;
    assert_eq!(f.body["basis"], "sessions");
    let steps = f.body["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    for s in steps {
        assert_eq!(s["sessions"], 0);
        assert_eq!(s["conversion_from_start"], Value::Null);
        assert_eq!(s["drop_off"], 0);
    }
    let c = get(&app, "/api/v1/analytics/business/collections", &admin).await;
    let names: Vec<&str> = c.body["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Black Rose", "Love Hurts", "Signature"]);
    let m = get(&app, "/api/v1/analytics/ml/overview", &admin).await;
    assert_eq!(m.body["jobs"], 0, "{:#}", m.body);
    assert_eq!(m.body["success_rate"], Value::Null);
    assert_eq!(m.body["cost_source"], "none");
    assert_eq!(m.body["duration_ms"]["p95"], Value::Null);
    assert_eq!(m.body["pipelines"].as_array().unwrap().len(), 3);
    let p = get(&app, "/api/v1/analytics/ml/providers", &admin).await;
    let providers: Vec<&str> = p.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["gemini", "huggingface", "replicate", "tripo"]);
    let sales = get(&app, "/api/v1/analytics/business/sales?range=24h", &admin).await;
    assert_eq!(sales.body["points"].as_array().unwrap().len(), 25);
}

fn order(
    id: &str,
    at: chrono::DateTime<Utc>,
    currency: &str,
    lines: &[(&str, &str, u32, f64)],
) -> Value {
    let amount: f64 = lines.iter().map(|(_, _, q, p)| f64::from(*q) * p).sum();
    json!({"kind": "order", "occurred_at": at.to_rfc3339(), "session_id": format!("s-{id}"),
        "payload": {"order_id": id, "amount": amount, "currency": currency,
        "items": lines.iter().map(|(p, c, q, u)| json!({"product_id": p, "collection": c,
            "quantity": q, "unit_price": u})).collect::<Vec<_>>()}})
}

#[tokio::test]
async fn figures_comparisons_and_deltas() {
    let app = TestApp::new();
    let admin = app.admin();
    let now = Utc::now();
    let recent = now - Duration::hours(2);
    let earlier = now - Duration::hours(30);
    let mut events = vec![
        order(
            "o1",
            recent,
            "USD",
            &[("p1", "Black Rose", 2, 10.5), ("p2", "signature", 1, 4.25)],
        ),
        order("o2", recent, "USD", &[("p1", "black_rose", 1, 10.5)]),
        order("o3", recent, "EUR", &[("p3", "love-hurts", 1, 99.0)]),
        order("o4", earlier, "USD", &[("p2", "Signature", 4, 4.25)]),
    ];
    // A session that views, adds and orders; one that adds before viewing.
    for (sid, kinds) in [
        (
            "s-o1",
            ["page_view", "product_view", "cart_add", "checkout_start"],
        ),
        (
            "s-x",
            ["cart_add", "page_view", "product_view", "page_view"],
        ),
    ] {
        for (i, kind) in kinds.iter().enumerate() {
            let at = recent - Duration::minutes(10 - i as i64);
            events.push(
                json!({"kind": kind, "occurred_at": at.to_rfc3339(), "session_id": sid,
                "payload": {"path": "/", "product_id": "p1", "collection": "Black Rose"}}),
            );
        }
    }
    for (i, status) in ["queued", "running", "succeeded"].iter().enumerate() {
        events.push(json!({"kind": "ml_job", "occurred_at": (recent + Duration::seconds(i as i64)).to_rfc3339(),
            "payload": {"pipeline": "assets", "stage": "approval", "provider": "tripo",
            "status": status, "duration_ms": 1500.0, "cost_usd": 0.25, "job_id": "j1"}}));
    }
    let r = app.post_events(&batch(events.clone()), Some(&admin)).await;
    assert_eq!(r.body["accepted"], events.len(), "{:#}", r.body);

    let o = get(
        &app,
        "/api/v1/analytics/business/overview?range=24h&compare=previous_period",
        &admin,
    )
    .await;
    assert_eq!(o.status, StatusCode::OK, "{:#}", o.body);
    assert_eq!(o.body["revenue"], 2.0 * 10.5 + 4.25 + 10.5);
    assert_eq!(o.body["orders"], 2);
    assert_eq!(o.body["units"], 4);
    assert_eq!(o.body["aov"], 17.88);
    assert_eq!(
        o.body["other_currencies"],
        json!([{"currency": "EUR", "orders": 1, "revenue": 99.0}])
    );
    let cmp = &o.body["compare"];
    assert_eq!(cmp["revenue"], 17.0);
    assert_eq!(cmp["orders"], 1);
    assert_eq!(cmp["delta"]["orders"], json!({"abs": 1.0, "pct": 1.0}));
    assert_eq!(cmp["range"]["to"], o.body["range"]["from"]);
    let eur = get(
        &app,
        "/api/v1/analytics/business/overview?range=24h&currency=eur&compare=previous_period",
        &admin,
    )
    .await;
    assert_eq!(eur.body["revenue"], 99.0);
    assert_eq!(
        eur.body["compare"]["delta"]["revenue"],
        json!({"abs": 99.0, "pct": null})
    );

    let c = get(
        &app,
        "/api/v1/analytics/business/collections?range=24h",
        &admin,
    )
    .await;
    let black = &c.body["collections"][0];
    assert_eq!(black["collection"], "black-rose");
    assert_eq!(
        (&black["orders"], &black["units"], &black["revenue"]),
        (&json!(2), &json!(3), &json!(31.5))
    );
    assert_eq!(black["views"], 2);
    assert_eq!(black["conversion_rate"], 1.0);

    let p = get(
        &app,
        "/api/v1/analytics/business/products?range=24h&sort=units",
        &admin,
    )
    .await;
    let first = &p.body["products"][0];
    assert_eq!(
        (&first["product_id"], &first["units"], &first["orders"]),
        (&json!("p1"), &json!(3), &json!(2))
    );
    assert_eq!(
        (&first["views"], &first["cart_adds"]),
        (&json!(2), &json!(2))
    );

    let f = get(
        &app,
        "/api/v1/analytics/business/funnel?range=24h&collection=Black%20Rose",
        &admin,
    )
    .await;
    let sessions: Vec<u64> = f.body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessions"].as_u64().unwrap())
        .collect();
    // s-o1 reaches the order (its own session id), s-x reaches product_view, s-o2 only
    // orders (no page view first).
    assert_eq!(sessions, [2, 2, 1, 1, 1], "{:#}", f.body);
    assert_eq!(f.body["collection"], "black-rose");

    let s = get(
        &app,
        "/api/v1/analytics/business/sales?range=24h&compare=previous_period",
        &admin,
    )
    .await;
    let points = s.body["points"].as_array().unwrap();
    let before = s.body["compare"]["points"].as_array().unwrap();
    assert_eq!(
        points.len(),
        before.len(),
        "compare points align bucket by bucket"
    );
    let total: f64 = before.iter().map(|p| p["revenue"].as_f64().unwrap()).sum();
    assert_eq!(total, 17.0);
    assert_eq!(
        points
            .iter()
            .map(|p| p["by_collection"]["black-rose"]["orders"].as_u64().unwrap())
            .sum::<u64>(),
        2
    );

    let a = get(&app, "/api/v1/analytics/ml/assets?range=24h", &admin).await;
    assert_eq!(
        (&a.body["jobs"], &a.body["succeeded"]),
        (&json!(1), &json!(1)),
        "{:#}",
        a.body
    );
    assert_eq!(a.body["cost_usd"], 0.25);
    assert_eq!(a.body["cost_source"], "events");
    let approval = a.body["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "approval")
        .unwrap();
    assert_eq!(approval["jobs"], 1);
    let pr = get(&app, "/api/v1/analytics/ml/providers?range=24h", &admin).await;
    let tripo = pr.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "tripo")
        .unwrap();
    assert_eq!(tripo["cost_per_success_usd"], 0.25);
}

#[tokio::test]
async fn previous_year_maps_feb_29_to_feb_28() {
    let app = TestApp::new();
    let admin = app.admin();
    let o = get(
        &app,
        "/api/v1/analytics/business/overview?from=2024-02-29T00:00:00Z&to=2024-03-01T00:00:00Z&compare=previous_year",
        &admin,
    )
    .await;
    assert_eq!(o.status, StatusCode::OK, "{:#}", o.body);
    assert_eq!(
        o.body["compare"]["range"]["from"],
        "2023-02-28T00:00:00+00:00"
    );
    assert_eq!(
        o.body["compare"]["range"]["to"],
        "2023-03-01T00:00:00+00:00"
    );
    // Sales points align by calendar day: Feb 28 and Feb 29 beside 2023-02-28.
    let s = get(
        &app,
        "/api/v1/analytics/business/sales?from=2024-02-28T00:00:00Z&to=2024-03-02T00:00:00Z&granularity=day&compare=previous_year",
        &admin,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK, "{:#}", s.body);
    let ts = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["ts"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ts(&s.body["points"]),
        [
            "2024-02-28T00:00:00+00:00",
            "2024-02-29T00:00:00+00:00",
            "2024-03-01T00:00:00+00:00"
        ]
    );
    assert_eq!(
        ts(&s.body["compare"]["points"]),
        [
            "2023-02-28T00:00:00+00:00",
            "2023-02-28T00:00:00+00:00",
            "2023-03-01T00:00:00+00:00"
        ]
    );
    let p = get(
        &app,
        "/api/v1/analytics/business/overview?from=2024-03-01T00:00:00Z&to=2024-03-08T00:00:00Z&compare=previous_period",
        &admin,
    )
    .await;
    assert_eq!(
        p.body["compare"]["range"]["from"],
        "2024-02-23T00:00:00+00:00"
    );
    assert_eq!(
        p.body["compare"]["range"]["to"],
        "2024-03-01T00:00:00+00:00"
    );
}

#[tokio::test]
async fn a_token_limited_to_projects_sees_only_those() {
    let app = TestApp::new();
    let other = ProjectId::parse("other").unwrap();
    let token = app
        .jwt
        .issue_scoped(
            "v",
            &[Role::BusinessViewer],
            Some(&[other]),
            Utc::now().timestamp(),
            600,
        )
        .unwrap();
    let auth = format!("Bearer {token}");
    let r = get(&app, "/api/v1/analytics/business/overview", &auth).await;
    r.assert_error(StatusCode::NOT_FOUND, None);
    let r = get(
        &app,
        "/api/v1/analytics/business/overview?project=other",
        &auth,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
}

#[tokio::test]
async fn the_default_currency_is_the_projects_else_usd() {
    let app = TestApp::new();
    let admin = app.admin();
    let r = Resp::from(
        app.client
            .post("/api/v1/analytics/projects")
            .header("authorization", &admin)
            .body_json(&json!({"id": "eu", "name": "EU", "settings": {"currency": "EUR"}}))
            .send()
            .await,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:#}", r.body);
    let at = Utc::now() - Duration::hours(1);
    let mut events = vec![
        order("e1", at, "EUR", &[("p1", "signature", 1, 30.0)]),
        order("u1", at, "USD", &[("p1", "signature", 2, 5.0)]),
    ];
    for e in &mut events {
        e["project"] = json!("eu");
    }
    events.push(order("d1", at, "USD", &[("p1", "signature", 1, 7.0)]));
    let r = app.post_events(&batch(events.clone()), Some(&admin)).await;
    assert_eq!(r.body["accepted"], events.len(), "{:#}", r.body);
    let overview = |q: &'static str| {
        let app = &app;
        let admin = &admin;
        async move {
            get(
                app,
                &format!("/api/v1/analytics/business/overview?range=24h&{q}"),
                admin,
            )
            .await
            .body
        }
    };
    let eu = overview("project=eu").await;
    assert_eq!(
        (&eu["currency"], &eu["revenue"]),
        (&json!("EUR"), &json!(30.0)),
        "{eu:#}"
    );
    let eu_usd = overview("project=eu&currency=usd").await;
    assert_eq!(
        (&eu_usd["currency"], &eu_usd["revenue"]),
        (&json!("USD"), &json!(10.0))
    );
    // A project without a currency setting falls back to USD.
    let default = overview("project=default").await;
    assert_eq!(
        (&default["currency"], &default["revenue"]),
        (&json!("USD"), &json!(7.0))
    );
    let dash = get(
        &app,
        "/api/v1/analytics/dashboard/summary?project=eu",
        &admin,
    )
    .await;
    assert_eq!(
        dash.body["sections"]["business"]["currency"], "EUR",
        "{:#}",
        dash.body
    );
}
