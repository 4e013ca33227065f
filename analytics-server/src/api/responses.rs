//! The one place that documents the error answers of every operation: [`ApiResult`].
//!
//! An operation returns `ApiResult<Success>` (or `ApiResult<Success, Extra>`); the spec then
//! lists the operation's own success answers followed by the standard error answers every
//! authenticated `/api` operation can give (400, 401, 403, 500, 503), plus those named by
//! `Extra`: [`Body`] (413, 415) for operations that read a request body, [`NotFound`] (404),
//! [`Conflict`] (409), [`PreconditionFailed`] (412), [`RateLimited`] (429), or a tuple of them. Every error answer has the
//! [`ErrorBody`] schema; 401 documents `WWW-Authenticate`, 429 and 503 document `Retry-After`.
//!
//! At run time the error is an [`ApiError`] (`?` converts core, collector and `ApiError`
//! errors); the middleware renders it in the one error shape.

use std::marker::PhantomData;

use poem_openapi::ApiResponse;
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;

use crate::error::{ApiError, ErrorBody};

/// The result of an operation: its success answer `T`, or an [`ApiError`] documented as the
/// standard error answers plus those of `X` (see the module docs).
pub type ApiResult<T, X = ()> = Result<T, Failure<X>>;

/// The error side of [`ApiResult`]: an [`ApiError`] whose type documents the error answers.
#[derive(Debug)]
pub struct Failure<X = ()>(pub ApiError, PhantomData<fn() -> X>);

impl<X> Failure<X> {
    /// The error to answer with.
    pub fn into_inner(self) -> ApiError {
        self.0
    }
}

impl<X, E: Into<ApiError>> From<E> for Failure<X> {
    fn from(e: E) -> Self {
        Self(e.into(), PhantomData)
    }
}

impl<X> From<Failure<X>> for poem::Error {
    fn from(f: Failure<X>) -> Self {
        f.0.into()
    }
}

/// A set of error answers an operation adds to the standard ones.
pub trait ExtraErrors {
    /// The extra statuses, appended to `out`.
    fn statuses(out: &mut Vec<u16>);
}

/// No extra error answers.
impl ExtraErrors for () {
    fn statuses(_: &mut Vec<u16>) {}
}

/// The operation reads a request body: 408 (body too slow), 413 (too large) and 415 (not
/// JSON).
#[derive(Debug)]
pub enum Body {}

/// The operation names a resource that may not exist: 404.
#[derive(Debug)]
pub enum NotFound {}

/// The operation may conflict with the stored state: 409.
#[derive(Debug)]
pub enum Conflict {}

/// The operation is rate limited: 429 with `Retry-After`.
#[derive(Debug)]
pub enum RateLimited {}

/// The operation is conditional (`If-Match`): 412.
#[derive(Debug)]
pub enum PreconditionFailed {}

impl ExtraErrors for PreconditionFailed {
    fn statuses(out: &mut Vec<u16>) {
        out.push(412);
    }
}

impl ExtraErrors for Body {
    fn statuses(out: &mut Vec<u16>) {
        out.extend([408, 413, 415]);
    }
}

impl ExtraErrors for NotFound {
    fn statuses(out: &mut Vec<u16>) {
        out.push(404);
    }
}

impl ExtraErrors for Conflict {
    fn statuses(out: &mut Vec<u16>) {
        out.push(409);
    }
}

impl ExtraErrors for RateLimited {
    fn statuses(out: &mut Vec<u16>) {
        out.push(429);
    }
}

macro_rules! extra_errors_tuple {
    ($($t:ident),+) => {
        impl<$($t: ExtraErrors),+> ExtraErrors for ($($t,)+) {
            fn statuses(out: &mut Vec<u16>) {
                $($t::statuses(out);)+
            }
        }
    };
}

extra_errors_tuple!(A);
extra_errors_tuple!(A, B);
extra_errors_tuple!(A, B, C);
extra_errors_tuple!(A, B, C, D);

/// The statuses every authenticated `/api` operation may answer with.
/// (414 and 431 come from the middleware's limits on the request head.)
pub const STANDARD_ERRORS: [u16; 7] = [400, 401, 403, 414, 431, 500, 503];

/// The statuses documented for an operation whose extra errors are `X`, ascending.
pub fn error_statuses<X: ExtraErrors>() -> Vec<u16> {
    let mut out = STANDARD_ERRORS.to_vec();
    X::statuses(&mut out);
    out.sort_unstable();
    out.dedup();
    out
}

fn description(status: u16) -> &'static str {
    match status {
        400 => "Invalid input: `error.field` names the parameter or body field.",
        401 => "Missing, expired or invalid credentials.",
        403 => "The credentials do not grant this operation (role or project).",
        404 => "The named resource does not exist.",
        408 => "The request body did not arrive within the body read timeout.",
        414 => "The request target (path and query) is longer than 8 KiB.",
        431 => "The request has more than 100 headers or more than 16 KiB of them.",
        409 => "The request conflicts with the stored state.",
        412 => "`If-Match` names a version that is no longer current.",
        413 => "The body exceeds the size limit (`field: body`) or holds too many items.",
        415 => "The body is not JSON (`Content-Type` must be `application/json` or `+json`).",
        429 => "Rate limited; retry after `Retry-After` seconds. Nothing was stored.",
        500 => "Internal error (details are logged with the request id, never sent).",
        503 => {
            "The store is unavailable, the queue is full or the server is shutting down; \
                retry after `Retry-After` seconds. Nothing was acknowledged."
        }
        _ => "Error.",
    }
}

fn header(name: &str, description: &str) -> MetaHeader {
    MetaHeader {
        name: name.to_owned(),
        description: Some(description.to_owned()),
        required: true,
        deprecated: false,
        schema: match name {
            "Retry-After" => u64::schema_ref(),
            _ => String::schema_ref(),
        },
    }
}

/// The documented answer for one error status.
pub fn error_response(status: u16) -> MetaResponse {
    let headers = match status {
        401 => vec![header("WWW-Authenticate", "`Bearer`.")],
        429 | 503 => vec![header("Retry-After", "Seconds to wait before retrying.")],
        _ => Vec::new(),
    };
    MetaResponse {
        description: description(status),
        status: Some(status),
        status_range: None,
        content: vec![MetaMediaType {
            content_type: "application/json; charset=utf-8",
            schema: ErrorBody::schema_ref(),
        }],
        headers,
    }
}

impl<X: ExtraErrors> ApiResponse for Failure<X> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: error_statuses::<X>()
                .into_iter()
                .map(error_response)
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_errors_add_to_the_standard_ones_in_order() {
        assert_eq!(
            error_statuses::<()>(),
            vec![400, 401, 403, 414, 431, 500, 503]
        );
        assert_eq!(
            error_statuses::<(Body, NotFound, Conflict, RateLimited)>(),
            vec![
                400, 401, 403, 404, 408, 409, 413, 414, 415, 429, 431, 500, 503
            ]
        );
    }

    #[test]
    fn retry_after_and_www_authenticate_are_documented_where_sent() {
        let names = |s| {
            error_response(s)
                .headers
                .into_iter()
                .map(|h| h.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(401), ["WWW-Authenticate"]);
        assert_eq!(names(429), ["Retry-After"]);
        assert_eq!(names(503), ["Retry-After"]);
        assert!(names(400).is_empty());
    }

    #[test]
    fn failure_converts_core_errors_and_keeps_the_api_error() {
        let f: Failure = analytics_core::Error::invalid("limit", "bad").into();
        assert_eq!(f.0.field.as_deref(), Some("limit"));
        let e: poem::Error = Failure::<Body>::from(ApiError::forbidden("no")).into();
        assert_eq!(
            e.downcast_ref::<ApiError>().map(|e| e.code),
            Some("forbidden")
        );
    }
}
