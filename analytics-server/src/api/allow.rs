//! The `Allow` header of 405 answers: the methods of each path, read from the operations'
//! OpenAPI metadata so that new routes are covered without a list to maintain.

use std::sync::Arc;

use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::OpenApi;

use crate::error::ApiError;

/// What paths outside the OpenAPI service (the spec, the Swagger UI) allow.
const READ_ONLY: &str = "GET, HEAD";

/// The allowed methods of every documented path.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllowTable {
    /// (path template split on `/`, `Allow` value), e.g. (`["", "alerts", "{id}"]`, `GET, HEAD`).
    paths: Vec<(Vec<String>, String)>,
}

impl AllowTable {
    /// The table of the operations of `T` (GET implies HEAD, as poem answers HEAD for it).
    pub(crate) fn of<T: OpenApi>() -> Self {
        let mut paths: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for path in T::meta().into_iter().flat_map(|api| api.paths) {
            let segments: Vec<String> = path.path.split('/').map(str::to_owned).collect();
            let at = match paths.iter().position(|(s, _)| *s == segments) {
                Some(at) => at,
                None => {
                    paths.push((segments, Vec::new()));
                    paths.len() - 1
                }
            };
            let methods = &mut paths[at].1;
            for op in path.operations {
                methods.push(op.method.as_str().to_owned());
                if op.method == poem::http::Method::GET {
                    methods.push("HEAD".to_owned());
                }
            }
        }
        Self {
            paths: paths
                .into_iter()
                .map(|(s, mut m)| {
                    m.sort();
                    m.dedup();
                    (s, m.join(", "))
                })
                .collect(),
        }
    }

    /// The `Allow` value for a request path (`GET, HEAD` for paths outside the API).
    pub(crate) fn allow(&self, path: &str) -> &str {
        let segments: Vec<&str> = path.split('/').collect();
        // A static path (`/alerts/configs/export`) wins over a template that also matches it
        // (`/alerts/configs/{id}`), as in the router.
        let exact = self.paths.iter().find(|(template, _)| {
            template.len() == segments.len() && template.iter().zip(&segments).all(|(t, s)| t == s)
        });
        exact
            .or_else(|| {
                self.paths.iter().find(|(template, _)| {
                    template.len() == segments.len()
                        && template.iter().zip(&segments).all(|(t, s)| {
                            t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                        })
                })
            })
            .map_or(READ_ONLY, |(_, allow)| allow)
    }
}

/// Answers a 405 of the routes below in the one error shape with the `Allow` header.
pub(crate) async fn with_allow<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    table: Arc<AllowTable>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    match ep.call(req).await {
        Err(e) if e.status() == StatusCode::METHOD_NOT_ALLOWED => {
            let mut resp = ApiError::from_poem(e).into_response();
            if let Ok(v) = HeaderValue::from_str(table.allow(&path)) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            Ok(resp)
        }
        other => other.map(IntoResponse::into_response),
    }
}
