//! What an HTTP provider's answer means for the retry logic: 2xx delivered; 429 rate limited
//! (with `Retry-After` in seconds or as an HTTP date); 408 and 5xx transient; any other 4xx
//! permanent, carrying the provider's own message. Transport errors (timeouts, refused
//! connections) are transient, except a target refused by the SSRF guard.

use std::time::Duration;

use analytics_core::notification::NotifyError;
use reqwest::StatusCode;

/// Longest provider message kept in an error.
const MAX_MESSAGE: usize = 300;

/// Classifies a finished HTTP exchange; on success returns the body.
pub(crate) async fn classify(response: reqwest::Response) -> Result<String, NotifyError> {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(body);
    }
    Err(classify_status(status, retry_after, &body))
}

/// The error for a non-success status.
pub(crate) fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> NotifyError {
    let message = provider_message(body);
    let text = if message.is_empty() {
        format!("provider answered {}", status.as_u16())
    } else {
        format!("provider answered {}: {message}", status.as_u16())
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        NotifyError::RateLimited { retry_after }
    } else if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        NotifyError::Transient(text)
    } else {
        NotifyError::Permanent(text)
    }
}

/// A transport error as a delivery failure. The message never carries the URL (a webhook's
/// path is a secret).
pub(crate) fn transport_error(e: reqwest::Error) -> NotifyError {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(&e);
    let mut refused = false;
    while let Some(c) = cur {
        let s = c.to_string();
        refused |= s.contains("not a public address");
        text.push_str(": ");
        text.push_str(&s);
        cur = c.source();
    }
    if refused {
        NotifyError::Permanent(text)
    } else if e.is_timeout() {
        NotifyError::Transient(format!("timed out: {text}"))
    } else {
        NotifyError::Transient(text)
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// The provider's message: a JSON body's `message` (Twilio) or `error` field, else the
/// text, on one line and bounded.
fn provider_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["message", "error"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
        });
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    one_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_kinds() {
        let rl = classify_status(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(2)),
            "",
        );
        assert_eq!(
            rl,
            NotifyError::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(matches!(
            classify_status(StatusCode::BAD_GATEWAY, None, "x"),
            NotifyError::Transient(_)
        ));
        let p = classify_status(
            StatusCode::BAD_REQUEST,
            None,
            r#"{"code": 21211, "message": "The 'To' number is not valid."}"#,
        );
        assert_eq!(
            p,
            NotifyError::Permanent("provider answered 400: The 'To' number is not valid.".into())
        );
        assert_eq!(
            classify_status(StatusCode::NOT_FOUND, None, "no_service"),
            NotifyError::Permanent("provider answered 404: no_service".into())
        );
    }
}
