//! The real services tests talk to: their URLs come from the environment that
//! `scripts/with-services` sets up.

/// The variable holding a PostgreSQL superuser URL (tests create their own databases).
pub const POSTGRES_URL_VAR: &str = "TEST_DATABASE_URL";
/// The variable holding a Redis URL.
pub const REDIS_URL_VAR: &str = "TEST_REDIS_URL";

/// The URL in `var`, or `None` when it is unset and the run is local (the test then says it
/// skipped). Under CI (`CI` set) a missing URL fails the test instead of skipping it.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{var} is not set but CI is: run the tests through scripts/test, which starts \
             the services"
        ),
        _ => {
            eprintln!("{var} is not set: skipping (run scripts/test to start the services)");
            None
        }
    }
}

/// The PostgreSQL superuser URL, see [`service_url`].
pub fn postgres_url() -> Option<String> {
    service_url(POSTGRES_URL_VAR)
}

/// The Redis URL, see [`service_url`].
pub fn redis_url() -> Option<String> {
    service_url(REDIS_URL_VAR)
}

/// Replaces the database name of a PostgreSQL URL (`postgres://u@h:p/db?x` -> `.../name?x`).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The test cluster stopped with `pg_ctl` (through the `TEST_PG_CTL` wrapper that
/// `scripts/with-services` writes, which presets the user, `-D` and `-l`). It is started again
/// by [`StoppedPostgres::start`], or when dropped, so a failing assertion never leaves the
/// other tests without a server. Stopping the shared cluster is only safe in a test binary
/// of its own with a single test (cargo runs test binaries one after another).
#[derive(Debug)]
pub struct StoppedPostgres {
    wrapper: String,
    running: bool,
}

impl StoppedPostgres {
    /// Stops the cluster (`pg_ctl stop -m fast -w`). `None` when `TEST_PG_CTL` is unset and
    /// the run is local (the caller skips); under CI a missing wrapper panics.
    pub fn stop() -> Option<Self> {
        let wrapper = service_url("TEST_PG_CTL")?;
        pg_ctl(&wrapper, &["stop", "-m", "fast", "-w"]);
        Some(Self {
            wrapper,
            running: false,
        })
    }

    /// Starts the cluster again and waits until it accepts connections.
    pub fn start(&mut self) {
        pg_ctl(&self.wrapper, &["start", "-w", "-t", "60"]);
        self.running = true;
    }
}

impl Drop for StoppedPostgres {
    fn drop(&mut self) {
        if !self.running {
            let _ = std::process::Command::new(&self.wrapper)
                .args(["start", "-w", "-t", "60"])
                .output();
        }
    }
}

/// Runs the pg_ctl wrapper and panics with its output when it fails. The wrapper passes
/// `-l`, so the started server does not keep pg_ctl's output open.
fn pg_ctl(wrapper: &str, args: &[&str]) {
    let out = std::process::Command::new(wrapper)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run the pg_ctl wrapper {wrapper}: {e}"));
    assert!(
        out.status.success(),
        "pg_ctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h:1/db?sslmode=disable", "t2"),
            "postgres://u@h:1/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:1", "t3"),
            "postgres://u@h:1/t3"
        );
    }
}
