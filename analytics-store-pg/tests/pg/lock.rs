//! The singleton-job lock across processes: two processes contend for one lock, exactly
//! one wins; killing it with SIGKILL frees the lock.
//!
//! The contending processes are this test binary run again with the holder "test" below
//! selected: it is always built, unlike the `hold_lock` example, which
//! `cargo test --all-targets` only builds as a test harness.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use analytics_core::ports::JobStore;
use analytics_store_pg::{PgStore, PgStoreOptions};

use crate::support::{fresh_pg_with, test_options};

const CHILD_URL: &str = "ANALYTICS_PG_LOCK_CHILD_URL";
const CHILD_LOCK: &str = "ANALYTICS_PG_LOCK_CHILD_NAME";

/// The child process of the test below, not a test of its own: with its variables set it
/// takes the lock, prints `locked` and holds it until killed, or prints `busy` and ends.
/// Without them (every ordinary run) it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_holder_child_process() {
    let (Ok(url), Ok(name)) = (std::env::var(CHILD_URL), std::env::var(CHILD_LOCK)) else {
        return;
    };
    let options = PgStoreOptions {
        max_connections: 1,
        ..PgStoreOptions::default()
    };
    let store = PgStore::connect(&url, options)
        .await
        .expect("child connects");
    let lease = store.try_lock(&name).await.expect("child try_lock");
    let mut out = std::io::stdout();
    writeln!(out, "{}", if lease.is_some() { "locked" } else { "busy" }).expect("stdout");
    out.flush().expect("stdout");
    if lease.is_some() {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// Kills the child on drop, so a failing test leaves no process behind.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a contender; its verdict (`locked` or `busy`) arrives on `tx` tagged `n`.
fn spawn(url: &str, name: &str, tx: mpsc::Sender<(usize, String)>, n: usize) -> Killer {
    let exe = std::env::current_exe().expect("own executable");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "lock::lock_holder_child_process",
            "--nocapture",
            "--test-threads",
            "1",
            "--quiet",
        ])
        .env(CHILD_URL, url)
        .env(CHILD_LOCK, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a contender");
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        // The test harness prints lines of its own; the verdict is the line that matters.
        // Read to the end all the same: a closed pipe would fail the child's last writes.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if line == "locked" || line == "busy" {
                let _ = tx.send((n, line.to_owned()));
            }
        }
    });
    Killer(child)
}

async fn wait_for_lock(store: &PgStore, name: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if store.try_lock(name).await.expect("try_lock").is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_holds_the_lock_and_its_death_frees_it() {
    let Some((store, url)) = fresh_pg_with(test_options()).await else {
        return;
    };
    let name = "rollup-scheduler";
    let (tx, rx) = mpsc::channel();
    let mut children = [
        Some(spawn(&url, name, tx.clone(), 0)),
        Some(spawn(&url, name, tx, 1)),
    ];
    let mut said = [String::new(), String::new()];
    for _ in 0..2 {
        let (n, line) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("both processes report");
        said[n] = line;
    }
    let holder = said.iter().position(|s| s == "locked");
    assert_eq!(
        said.iter().filter(|s| *s == "locked").count(),
        1,
        "exactly one holder: {said:?}"
    );
    assert_eq!(said.iter().filter(|s| *s == "busy").count(), 1, "{said:?}");
    let holder = holder.expect("a holder");
    let loser = 1 - holder;
    let status = children[loser]
        .as_mut()
        .expect("child")
        .0
        .wait()
        .expect("the busy process exits");
    assert!(status.success());

    assert!(
        store.try_lock(name).await.expect("try_lock").is_none(),
        "this process cannot take a lock held by another"
    );
    assert!(
        store
            .try_lock("another-job")
            .await
            .expect("try_lock")
            .is_some(),
        "other names are free"
    );

    // SIGKILL: no cleanup code runs; the server sees the session end.
    let mut killed = children[holder].take().expect("holder");
    killed.0.kill().expect("kill");
    killed.0.wait().expect("reap");
    assert!(
        wait_for_lock(&store, name, Duration::from_secs(10)).await,
        "the lock of a killed process is released"
    );
}
