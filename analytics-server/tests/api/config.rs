//! The configuration file, `config show` and the log format, through the real binary.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_analytics-server");

/// The binary with an empty environment (no variable of the test runner leaks in).
fn bin() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear();
    cmd
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `config show` line of `key`.
fn line<'a>(shown: &'a str, key: &str) -> &'a str {
    shown
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no line for {key} in\n{shown}"))
}

#[test]
fn config_show_layers_flags_over_env_over_file_over_defaults_and_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("analytics.toml");
    std::fs::write(
        &file,
        r#"
bind = "127.0.0.1:7001"
alert_interval_secs = 30
ingest-linger-ms = 7
health_max_p95_ms = 250.5
allow_private_targets = true
jwt_secret = "file-jwt-secret-0123456789abcdef-0123"
database_url = "postgres://app:file-db-password@db.internal/analytics"
user_id_key = "file-user-id-key"
"#,
    )
    .unwrap();
    let (ok, out, err) = run(bin()
        .env("ANALYTICS_CONFIG", &file)
        .env("ANALYTICS_BIND", "127.0.0.1:7002")
        .env("ANALYTICS_ALERT_INTERVAL_SECS", "45")
        .env("TWILIO_AUTH_TOKEN", "env-twilio-token")
        .env(
            "SLACK_ANALYTICS_WEBHOOK",
            "https://hooks.example/env-slack-path",
        )
        .env(
            "REDIS_URL",
            "redis://cache:env-redis-password@cache.internal:6379",
        )
        .args(["config", "show", "--bind", "127.0.0.1:7003"])
        .args([
            "--smtp-url",
            "smtps://mailer:flag-smtp-password@smtp.example:465",
        ]));
    assert!(ok, "{err}");
    // flag > env > file > default
    assert_eq!(
        line(&out, "bind"),
        r#"bind = "127.0.0.1:7003"  # flag, ANALYTICS_BIND"#
    );
    assert_eq!(
        line(&out, "alert_interval_secs"),
        r#"alert_interval_secs = "45"  # env, ANALYTICS_ALERT_INTERVAL_SECS"#
    );
    assert_eq!(
        line(&out, "ingest_linger_ms"),
        r#"ingest_linger_ms = "7"  # file, ANALYTICS_INGEST_LINGER_MS"#
    );
    assert!(line(&out, "health_max_p95_ms").contains(r#""250.5"  # file"#));
    assert!(line(&out, "allow_private_targets").contains(r#""true"  # file"#));
    assert_eq!(
        line(&out, "max_connections"),
        r#"max_connections = "1024"  # default, ANALYTICS_MAX_CONNECTIONS"#
    );
    assert!(out.contains("# twilio_account_sid (unset)  # TWILIO_ACCOUNT_SID"));
    // Secrets from the file, the environment and a flag: set, never shown.
    assert!(line(&out, "jwt_secret").contains(r#""***"  # file"#));
    assert!(line(&out, "user_id_key").contains(r#""***"  # file"#));
    assert!(line(&out, "twilio_auth_token").contains(r#""***"  # env"#));
    assert!(line(&out, "slack_webhook").contains(r#""***"  # env"#));
    assert!(line(&out, "smtp_url").contains(r#""***"  # flag"#));
    assert!(line(&out, "database_url").contains("postgres://app:***@db.internal/analytics"));
    assert!(line(&out, "redis_url").contains("redis://cache:***@cache.internal:6379"));
    for secret in [
        "file-jwt-secret",
        "file-db-password",
        "file-user-id-key",
        "env-twilio-token",
        "env-slack-path",
        "env-redis-password",
        "flag-smtp-password",
    ] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
        assert!(!err.contains(secret), "{secret} printed:\n{err}");
    }
    // The output is itself a configuration file that gives the same values.
    let again = dir.path().join("shown.toml");
    let reusable: String = out
        .lines()
        .filter(|l| !l.contains("\"***\"") && !l.contains(":***@"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&again, reusable).unwrap();
    let (ok, out2, err) = run(bin()
        .args(["--config"])
        .arg(&again)
        .args(["config", "show"]));
    assert!(ok, "{err}");
    assert!(line(&out2, "bind").starts_with(r#"bind = "127.0.0.1:7003"  # file"#));
    assert!(line(&out2, "alert_interval_secs").starts_with(r#"alert_interval_secs = "45""#));
}

#[test]
fn an_unknown_or_misspelt_setting_in_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("analytics.toml");
    std::fs::write(&file, "bnd = \"127.0.0.1:9\"\n").unwrap();
    let (ok, _, err) = run(bin().arg("--config").arg(&file).args(["config", "show"]));
    assert!(!ok);
    assert!(err.contains("unknown setting `bnd`"), "{err}");
    std::fs::write(&file, "max_connections = [1, 2]\n").unwrap();
    let (ok, _, err) = run(bin().arg("--config").arg(&file).args(["config", "show"]));
    assert!(!ok);
    assert!(err.contains("max_connections"), "{err}");
    let (ok, _, err) = run(bin().args(["--config", "/nonexistent/analytics.toml", "migrate"]));
    assert!(!ok);
    assert!(err.contains("/nonexistent/analytics.toml"), "{err}");
}

/// Starts `serve` on a free port over the memory store with stderr going to a file, waits
/// for it to log that it listens, stops it, and returns what it wrote.
fn serve_logs(format: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&path).unwrap();
    let mut cmd = bin();
    cmd.args([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--database-url",
        "memory://",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::from(log));
    if let Some(f) = format {
        cmd.env("ANALYTICS_LOG_FORMAT", f);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut text = String::new();
    while Instant::now() < deadline {
        text.clear();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        if text.contains("listening") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("listening"), "{text}");
    text
}

#[test]
fn logs_written_to_a_file_are_json_by_default_and_never_hold_colour_codes() {
    let auto = serve_logs(None);
    assert!(!auto.contains('\u{1b}'), "ANSI escape in\n{auto}");
    let records: Vec<serde_json::Value> = auto
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let listening = records
        .iter()
        .find(|r| r["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("no JSON `listening` record in\n{auto}"));
    assert_eq!(listening["level"], "INFO");
    assert!(listening["fields"]["port"].as_u64().unwrap() > 0);

    let text = serve_logs(Some("text"));
    assert!(!text.contains('\u{1b}'), "ANSI escape in\n{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" INFO ") && l.contains("listening")),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with('{')), "{text}");

    let json = serve_logs(Some("json"));
    assert!(!json.contains('\u{1b}'));
    assert!(
        json.lines()
            .any(|l| l.starts_with('{') && l.contains("\"listening\""))
    );
}
