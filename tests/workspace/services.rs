//! The real services the test script starts are reachable: a PostgreSQL superuser that can
//! create databases, and a Redis server. Under CI a missing URL fails instead of skipping.

use analytics_core::testkit::services::{postgres_url, redis_url, with_database};
use sqlx::{Connection, Executor, PgConnection, Row};

#[tokio::test]
async fn postgres_is_reachable_and_can_create_a_database() {
    let Some(url) = postgres_url() else { return };
    let mut conn = PgConnection::connect(&url)
        .await
        .expect("connect to PostgreSQL");
    let version: String = sqlx::query("show server_version_num")
        .fetch_one(&mut conn)
        .await
        .expect("version")
        .get(0);
    assert!(
        version.parse::<u32>().expect("number") >= 140_000,
        "PostgreSQL 14+ expected, got {version}"
    );
    let name = format!("probe_{}", uuid_like());
    conn.execute(sqlx::AssertSqlSafe(format!("create database {name}")))
        .await
        .expect("create database");
    let mut probe = PgConnection::connect(&with_database(&url, &name))
        .await
        .expect("connect to new db");
    let one: i32 = sqlx::query("select 1")
        .fetch_one(&mut probe)
        .await
        .expect("select")
        .get(0);
    assert_eq!(one, 1);
    probe.close().await.expect("close");
    conn.execute(sqlx::AssertSqlSafe(format!("drop database {name}")))
        .await
        .expect("drop database");
}

#[tokio::test]
async fn redis_is_reachable() {
    let Some(url) = redis_url() else { return };
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let key = format!("probe:{}", uuid_like());
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("42")
        .arg("EX")
        .arg(10)
        .query_async(&mut conn)
        .await
        .expect("set");
    let got: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(got, "42");
}

fn uuid_like() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}
