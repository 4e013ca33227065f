//! The one JSON error shape of the API and the one place that maps errors to HTTP status.
//!
//! Every error answer is `{"error": {"code", "message", "field"?}, "request_id"}`. Core
//! errors, collector errors and poem/poem-openapi extractor errors all pass through
//! [`ApiError`]; internal details are logged, never sent.

use std::fmt;

use analytics_core::{CollectorError, Error};
use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::Object;
use serde::Serialize;

tokio::task_local! {
    /// The id of the request being served (set by the observing middleware).
    pub static REQUEST_ID: String;
}

/// The current request's id, or `-` outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// The body of every error answer (documented in the spec as `ErrorBody`).
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
    /// The request id (also in the `X-Request-Id` header); quote it when reporting a problem.
    pub request_id: String,
}

/// The `error` member of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Object, Serialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid`, `malformed_body`, `unauthorized`,
    /// `forbidden`, `not_found`, `method_not_allowed`, `conflict`, `payload_too_large`,
    /// `too_many_events`, `unsupported_media_type`, `unavailable`, `internal`, ...
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The offending input as the client wrote it (`limit`, `events`,
    /// `payload.route`), when one is to blame.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (`invalid`, `unauthorized`, ...).
    pub code: &'static str,
    /// Human-readable message (never internal details).
    pub message: String,
    /// The offending field, when one is to blame.
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (429 answers).
    pub rate_limit: Option<(u32, u32, u64)>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            rate_limit: None,
        }
    }

    /// 429 with `Retry-After` and the `RateLimit-*` headers.
    pub fn rate_limited(
        message: impl Into<String>,
        limit: u32,
        remaining: u32,
        reset: u64,
    ) -> Self {
        Self {
            retry_after: Some(reset.max(1)),
            rate_limit: Some((limit, remaining, reset.max(1))),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 `invalid` naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message).with_field(field)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// 500; `detail` is logged, not sent.
    pub fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(error = %detail, request_id = %current_request_id(), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// Converts any poem error (extractor failures included) into the one shape.
    pub fn from_poem(err: poem::Error) -> Self {
        if let Some(e) = err.downcast_ref::<ApiError>() {
            return e.clone();
        }
        let status = err.status();
        if let Some(p) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
            return Self::invalid(p.name, p.reason.clone());
        }
        if let Some(p) = err.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>() {
            return Self::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("request body is not valid: {}", p.reason),
            )
            .with_field("body");
        }
        if status == StatusCode::UNAUTHORIZED {
            return Self::unauthorized("authentication required");
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(status, "payload_too_large", "request body is too large")
                .with_field("body");
        }
        if status.is_server_error() {
            return Self::internal(err);
        }
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::FORBIDDEN => "forbidden",
            _ => "bad_request",
        };
        Self::new(status, code, err.to_string())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// 400 naming the field, for a value a core parser refused.
impl From<analytics_core::FieldError> for ApiError {
    fn from(e: analytics_core::FieldError) -> Self {
        Self::invalid(e.field, e.message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { field, reason } => Self::invalid(field, reason),
            Error::NotFound { what } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            Error::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            Error::Unavailable(detail) => {
                tracing::warn!(error = %detail, request_id = %current_request_id(), "store unavailable");
                Self::unavailable("the store is unavailable, retry later", 5)
            }
            Error::Internal(detail) => Self::internal(detail),
        }
    }
}

impl From<CollectorError> for ApiError {
    fn from(e: CollectorError) -> Self {
        match e {
            CollectorError::Backpressure => {
                Self::unavailable("the ingest queue is full, retry later", 1)
            }
            CollectorError::Closed => Self::unavailable("the server is shutting down", 5),
            CollectorError::TooLarge(n) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_events",
                format!("{n} events do not fit the ingest queue"),
            )
            .with_field("events"),
            CollectorError::Write(e) => e.into(),
        }
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
            request_id: current_request_id(),
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = Response::builder()
            .status(self.status)
            .content_type("application/json; charset=utf-8")
            .body(body);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some((limit, remaining, reset)) = self.rate_limit {
            let h = resp.headers_mut();
            h.insert("ratelimit-limit", HeaderValue::from(limit));
            h.insert("ratelimit-remaining", HeaderValue::from(remaining));
            h.insert("ratelimit-reset", HeaderValue::from(reset));
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        poem::error::ResponseError::as_response(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_collector_errors_map_to_one_status_each() {
        let cases: Vec<(ApiError, StatusCode, Option<u64>)> = vec![
            (
                Error::invalid("limit", "bad").into(),
                StatusCode::BAD_REQUEST,
                None,
            ),
            (
                Error::not_found("event").into(),
                StatusCode::NOT_FOUND,
                None,
            ),
            (
                Error::Conflict("x".into()).into(),
                StatusCode::CONFLICT,
                None,
            ),
            (
                Error::Unavailable("db down".into()).into(),
                StatusCode::SERVICE_UNAVAILABLE,
                Some(5),
            ),
            (
                Error::Internal("secret detail".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ),
            (
                CollectorError::Backpressure.into(),
                StatusCode::SERVICE_UNAVAILABLE,
                Some(1),
            ),
            (
                CollectorError::Write(Error::Unavailable("x".into())).into(),
                StatusCode::SERVICE_UNAVAILABLE,
                Some(5),
            ),
            (
                CollectorError::TooLarge(9).into(),
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
            ),
        ];
        for (e, status, retry) in cases {
            assert_eq!(e.status, status, "{e}");
            assert_eq!(e.retry_after, retry, "{e}");
            let resp = poem::error::ResponseError::as_response(&e);
            assert_eq!(resp.status(), status);
            assert_eq!(
                resp.headers().get(header::RETRY_AFTER).map(|v| v
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()),
                retry
            );
        }
        let internal: ApiError = Error::Internal("secret detail".into()).into();
        assert!(!internal.message.contains("secret"));
        let invalid: ApiError = Error::invalid("limit", "bad").into();
        assert_eq!(invalid.field.as_deref(), Some("limit"));
    }
}
