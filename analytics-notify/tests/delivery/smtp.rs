//! Email through a real SMTP conversation with a sink on loopback.

use std::time::Duration;

use analytics_core::alert::Severity;
use analytics_core::notification::Channel;
use analytics_core::ports::Notifier;
use analytics_notify::{SmtpEmailNotifier, SmtpSettings};

use crate::helpers::{SmtpSink, email, notification};

#[tokio::test]
async fn the_sink_receives_the_mail_with_headers_text_and_html() {
    let sink = SmtpSink::start(false).await;
    let settings = SmtpSettings::parse(
        &format!("smtp://127.0.0.1:{}", sink.port),
        "Analytics Alerts <alerts@example.com>",
    )
    .unwrap();
    let mailer = SmtpEmailNotifier::new(settings, Duration::from_secs(5)).unwrap();
    let n = notification(Severity::Warning, Channel::Email, email());
    mailer.send(&n).await.unwrap();
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "alerts@example.com");
    assert_eq!(m.to, ["oncall@example.com"]);
    let data = &decode_quoted_printable(&m.data);
    assert!(
        m.data
            .contains("Content-Transfer-Encoding: quoted-printable")
    );
    for expected in [
        "From: \"Analytics Alerts\" <alerts@example.com>",
        "To: oncall@example.com",
        "Subject: [WARNING] firing: checkout errors",
        &format!("Message-ID: <{}@example.com>", n.id),
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Type: text/html; charset=utf-8",
        "is 912 (> 500); fired at 2026-11-30T12:00:00Z",
        "is 912 (&gt; 500)",
        "https://admin.example.com/alerts/1",
    ] {
        assert!(data.contains(expected), "missing {expected:?} in\n{data}");
    }
}

/// Undoes quoted-printable soft line breaks and `=XX` escapes (headers are plain ASCII).
fn decode_quoted_printable(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
