//! Shared pieces: notifications, a recording wiremock responder, an SMTP sink, a running
//! dispatcher over the in-memory outbox.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analytics_core::alert::Severity;
use analytics_core::ids::{EmailAddress, PhoneNumber, UserId};
use analytics_core::memory::MemoryStore;
use analytics_core::notification::{Channel, Notification, OutboxEntry, Recipient};
use analytics_core::ports::NotificationOutbox;
use analytics_core::{Clock, SystemClock};
use analytics_notify::{Dispatcher, DispatcherOptions, RetryPolicy, TargetPolicy};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;
use wiremock::{Request, Respond, ResponseTemplate};

pub(crate) const ALLOW_PRIVATE: TargetPolicy = TargetPolicy {
    allow_private: true,
};

pub(crate) fn notification(
    severity: Severity,
    channel: Channel,
    recipient: Recipient,
) -> Notification {
    Notification {
        id: Uuid::new_v4(),
        alert_id: Some(Uuid::new_v4()),
        severity,
        title: format!(
            "[{}] firing: checkout errors",
            severity.as_str().to_uppercase()
        ),
        body: "p95 of api.latency_ms over 300s is 912 (> 500); fired at 2026-11-30T12:00:00Z"
            .into(),
        link: Some("https://admin.example.com/alerts/1".into()),
        channel,
        recipient,
    }
}

pub(crate) fn phone() -> Recipient {
    Recipient::Phone(PhoneNumber::parse("+15551234567").unwrap())
}

pub(crate) fn email() -> Recipient {
    Recipient::Email(EmailAddress::parse("oncall@example.com").unwrap())
}

#[allow(dead_code)]
pub(crate) fn user(name: &str) -> Recipient {
    Recipient::User(UserId::parse(name).unwrap())
}

/// Answers with the given responses in order (the last one repeats) and records when each
/// request arrived.
#[derive(Clone)]
pub(crate) struct Sequence {
    responses: Arc<Vec<ResponseTemplate>>,
    seen: Arc<Mutex<Vec<(Instant, Request)>>>,
}

impl Sequence {
    pub(crate) fn new(responses: Vec<ResponseTemplate>) -> Self {
        Self {
            responses: Arc::new(responses),
            seen: Arc::default(),
        }
    }

    pub(crate) fn requests(&self) -> Vec<(Instant, Request)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Respond for Sequence {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().unwrap();
        seen.push((Instant::now(), request.clone()));
        let i = (seen.len() - 1).min(self.responses.len() - 1);
        self.responses[i].clone()
    }
}

/// Fast retries so tests take seconds.
pub(crate) fn fast_options() -> DispatcherOptions {
    DispatcherOptions {
        batch: 16,
        lease: Duration::from_secs(30),
        call_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        per_channel_concurrency: 4,
        retry: RetryPolicy {
            base: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            max_attempts: 5,
        },
        hourly_caps: Default::default(),
    }
}

/// A dispatcher running over an in-memory outbox; stops when dropped.
pub(crate) struct Running {
    pub(crate) store: Arc<MemoryStore>,
    stop: watch::Sender<bool>,
}

impl Running {
    pub(crate) fn start(
        store: Arc<MemoryStore>,
        build: impl FnOnce(Dispatcher) -> Dispatcher,
        options: DispatcherOptions,
    ) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let d = Arc::new(build(Dispatcher::new(store.clone(), clock, options)));
        let (stop, rx) = watch::channel(false);
        tokio::spawn(d.run(rx));
        Self { store, stop }
    }

    pub(crate) async fn enqueue(&self, n: &[Notification]) {
        self.store.enqueue(n, chrono::Utc::now()).await.unwrap();
    }

    /// Waits (at most 20 s) until the entry satisfies `done`.
    pub(crate) async fn wait_for(
        &self,
        id: Uuid,
        done: impl Fn(&OutboxEntry) -> bool,
    ) -> OutboxEntry {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let e = self.store.outbox_entry(id).await.unwrap();
            if done(&e) {
                return e;
            }
            assert!(Instant::now() < deadline, "entry never got there: {e:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// One message an SMTP sink received.
#[derive(Debug, Clone)]
pub(crate) struct Mail {
    pub(crate) from: String,
    pub(crate) to: Vec<String>,
    pub(crate) data: String,
}

/// A minimal SMTP server on loopback that accepts every message (no TLS, no auth), or one
/// that accepts connections and never answers (`hang`).
pub(crate) struct SmtpSink {
    pub(crate) port: u16,
    pub(crate) mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub(crate) async fn start(hang: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let store = mails.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                if hang {
                    held.push(socket);
                    continue;
                }
                tokio::spawn(session(socket, store.clone()));
            }
        });
        Self { port, mails }
    }

    pub(crate) fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn session(socket: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO")
            || upper.starts_with("RSET")
            || upper.starts_with("NOOP")
        {
            b"250 ok\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().trim_matches(['<', '>']).to_owned();
            to.clear();
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(cmd[8..].trim().trim_matches(['<', '>']).to_owned());
            b"250 ok\r\n"
        } else if upper == "DATA" {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            mails.lock().unwrap().push(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            b"250 queued as 42\r\n"
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            b"502 not implemented\r\n"
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
