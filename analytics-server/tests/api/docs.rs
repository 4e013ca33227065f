//! The documents that name the server's interface are checked against a running server:
//! every metric queried by `docs/grafana-dashboard.json` is on `/metrics`, and every `curl`
//! example of `docs/API.md` runs against the real binary and answers 2xx, with an example
//! for every route of the OpenAPI document.

use std::collections::BTreeSet;

use analytics_server::Role;
use chrono::Utc;
use serde_json::{Value, json};

use crate::helpers::{
    BinaryServer, RunningServer, bearer, fire_alert, get_json, http_client, metrics_text,
};

fn repo_file(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The sample names of an exposition (`http_request_duration_seconds_bucket`, ...).
fn exposed_samples(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The server's own metric names used in a PromQL expression (those of Prometheus itself,
/// like `up`, are left out).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut in_string = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '"' {
            in_string = !in_string;
            word.clear();
            continue;
        }
        if !in_string && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            word.push(c);
            continue;
        }
        if ["analytics_", "http_", "process_"]
            .iter()
            .any(|p| word.starts_with(p))
        {
            names.push(std::mem::take(&mut word));
        }
        word.clear();
    }
    names
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    exprs
}

#[test]
fn metric_names_are_taken_from_promql() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job=~"$job",route="analytics_x"}[5m]))) / up"#
        ),
        ["http_request_duration_seconds_bucket"]
    );
}

#[tokio::test]
async fn every_metric_of_the_grafana_dashboard_is_exposed() {
    let dashboard: Value =
        serde_json::from_str(&repo_file("docs/grafana-dashboard.json")).expect("valid JSON");
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 20, "{exprs:?}");

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("dash.db").display());
    let server = RunningServer::start(&url, |_| {}).await;
    let http = http_client();
    let admin = bearer("dash", &[Role::Admin]);
    let body = json!({"events": [{
        "kind": "api_request",
        "occurred_at": Utc::now().to_rfc3339(),
        "payload": {"method": "GET", "route": "/x", "status": 200, "latency_ms": 3.0},
    }]});
    let r = http
        .post(format!("{}/api/v1/analytics/events", server.base))
        .header("Authorization", &admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let text = metrics_text(&http, &server.base).await;
    let exposed = exposed_samples(&text);
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty() || expr.contains("up{"), "{expr}");
        used.extend(names);
    }
    let missing: Vec<_> = used
        .iter()
        .filter(|n| !exposed.contains(*n))
        .filter(|n| cfg!(target_os = "linux") || !n.starts_with("process_"))
        .collect();
    assert!(missing.is_empty(), "not on /metrics: {missing:?}\n{text}");
    assert!(used.len() >= 25, "{used:?}");
    server.stop().await;
}

/// One `curl` example of docs/API.md: its line, its command, and the values a later example
/// takes from its answer (`<!-- capture NAME=/json/pointer ... -->` after the block).
#[derive(Debug)]
struct CurlExample {
    line: usize,
    script: String,
    captures: Vec<(String, String)>,
}

impl CurlExample {
    /// `-X METHOD`, else POST when it sends a body, else GET.
    fn method(&self) -> String {
        let words: Vec<&str> = self.script.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "-X") {
            return words[i + 1].to_owned();
        }
        if words.iter().any(|w| *w == "-d" || w.starts_with("--data")) {
            "POST".into()
        } else {
            "GET".into()
        }
    }

    /// The path of the URL (`"$BASE/path?query"`), query left out.
    fn path(&self) -> String {
        let start = self
            .script
            .find("\"$BASE")
            .expect("the URL is \"$BASE/...\"")
            + 6;
        let url = &self.script[start..];
        let end = url.find(['"', '?']).expect("closing quote");
        url[..end].to_owned()
    }
}

/// The ```sh blocks of `markdown` whose command is `curl`.
fn curl_examples(markdown: &str) -> Vec<CurlExample> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```sh" {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while lines[end].trim() != "```" {
            end += 1;
        }
        let script = lines[start..end].join("\n");
        i = end + 1;
        if !script.trim_start().starts_with("curl ") {
            continue;
        }
        let mut captures = Vec::new();
        if let Some(rest) = lines
            .get(i)
            .and_then(|l| l.trim().strip_prefix("<!-- capture "))
        {
            for pair in rest.trim_end_matches("-->").split_whitespace() {
                let (name, pointer) = pair.split_once('=').expect("NAME=/pointer");
                captures.push((name.to_owned(), pointer.to_owned()));
            }
        }
        out.push(CurlExample {
            line: start,
            script,
            captures,
        });
    }
    out
}

/// Whether `path` (`/a/$ID/b`) is an instance of the OpenAPI `template` (`/a/{id}/b`).
fn matches_template(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

#[test]
fn curl_examples_are_read_with_their_method_path_and_captures() {
    let md = "text\n```sh\ncurl -X PUT \"$BASE/a/$ID?x=1\" \\\n  -d '{}'\n```\n<!-- capture A=/id B=/items/0/id -->\n```sh\nexport X=1\n```\n```sh\ncurl \"$BASE/livez\"\n```\n";
    let ex = curl_examples(md);
    assert_eq!(ex.len(), 2);
    assert_eq!(
        (ex[0].method(), ex[0].path()),
        ("PUT".into(), "/a/$ID".into())
    );
    assert_eq!(
        ex[0].captures,
        [
            ("A".into(), "/id".into()),
            ("B".into(), "/items/0/id".into())
        ]
    );
    assert_eq!(
        (ex[1].method(), ex[1].path()),
        ("GET".into(), "/livez".into())
    );
    assert!(matches_template("/a/{id}", "/a/$ID"));
    assert!(!matches_template("/a/{id}/b", "/a/$ID"));
    assert!(!matches_template("/a/export", "/a/$ID"));
}

/// Opens an alert (api.errors above 10 %, recipient `alice` in-app) and waits until it is
/// active and alice has its in-app notification, so that the examples acknowledging an alert
/// and reading a notification have one.
async fn open_an_alert(http: &reqwest::Client, base: &str, admin: &str) {
    let config = json!({
        "name": "seeded api errors", "metric": "api.errors", "stat": "avg",
        "condition": "threshold_above", "threshold": 0.1, "window_secs": 600,
        "severity": "warning", "cooldown_secs": 0, "recipients": [{"user": "alice"}],
    });
    fire_alert(http, base, admin, &config, "/seeded").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for path in ["alerts/active", "notifications"] {
        loop {
            let body = get_json(
                http,
                &format!("{base}/api/v1/analytics/{path}"),
                Some(admin),
            )
            .await;
            if body["items"].as_array().is_some_and(|i| !i.is_empty()) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{path}: {body:#}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

/// Runs one example with bash and the real curl (wrapped to keep the body and print the
/// status) in `env`; returns the status and the body.
fn run_example(
    example: &CurlExample,
    env: &[(String, String)],
    body: &std::path::Path,
) -> (u16, String) {
    let script = format!(
        "set -eu\ncurl() {{ command curl -sS -o \"$DOC_BODY\" -w '%{{http_code}}' \"$@\"; }}\n{}\n",
        example.script
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("DOC_BODY", body)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "docs/API.md line {}: {}\n{}",
        example.line,
        String::from_utf8_lossy(&out.stderr),
        example.script
    );
    let status = stdout
        .parse()
        .unwrap_or_else(|_| panic!("status {stdout:?}"));
    (status, std::fs::read_to_string(body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_curl_example_of_api_md_runs() {
    let examples = curl_examples(&repo_file("docs/API.md"));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api-md.db").display());
    let server = BinaryServer::spawn(&url, &[("ANALYTICS_ALERT_INTERVAL_SECS", "1")]);
    let http = http_client();

    // Every route of the OpenAPI document has an example.
    let spec = get_json(&http, &format!("{}/openapi.json", server.base), None).await;
    let mut routes = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes += 1;
            let method = method.to_uppercase();
            assert!(
                examples
                    .iter()
                    .any(|e| e.method() == method && matches_template(template, &e.path())),
                "docs/API.md has no curl example of {method} {template}"
            );
        }
    }
    assert!(routes >= 50, "{routes}");

    let token = |sub: &str, role: Role| {
        bearer(sub, &[role])
            .trim_start_matches("Bearer ")
            .to_owned()
    };
    let admin = token("alice", Role::Admin);
    open_an_alert(&http, &server.base, &format!("Bearer {admin}")).await;

    let mut env = vec![
        ("BASE".to_owned(), server.base.clone()),
        ("TOKEN".to_owned(), admin),
        (
            "VIEWER_TOKEN".to_owned(),
            token("bob", Role::BusinessViewer),
        ),
    ];
    let body_file = dir.path().join("body");
    for example in &examples {
        let (status, body) = run_example(example, &env, &body_file);
        assert!(
            (200..300).contains(&status),
            "docs/API.md line {}: {status}\n{}\n{body}",
            example.line,
            example.script
        );
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        // An ingest example whose events the server refuses teaches the wrong shape.
        assert!(
            json["rejected"].as_u64().unwrap_or(0) == 0,
            "docs/API.md line {}: {body}",
            example.line
        );
        for (name, pointer) in &example.captures {
            let value = match json.pointer(pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => panic!("docs/API.md line {}: no {pointer} in {body}", example.line),
            };
            env.push((name.clone(), value));
        }
    }
    assert!(examples.len() >= routes, "{} examples", examples.len());
}
