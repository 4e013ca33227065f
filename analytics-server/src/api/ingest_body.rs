//! The ingest body both ways, (de)serialized with serde straight from and to bytes.
//!
//! poem-openapi's `Json<T>` goes through a `serde_json::Value` tree (every event object, its
//! payload and properties built as maps, then rebuilt into the typed input), and answers
//! through another one; under load that cost about a third of the server's CPU per event
//! (`docs/PERFORMANCE.md`). These payload types keep the documented schemas of the `Object`
//! types in `events.rs` and skip the trees. Each element of `events` still parses on its
//! own: an element that is not an object is one rejected event, not a failed request.

use std::fmt;

use analytics_core::EventInput;
use poem::http::StatusCode;
use poem::{IntoResponse, Request, RequestBody, Response};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::Type;
use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::events::IngestRequest;
use crate::error::ApiError;

const JSON: &str = "application/json; charset=utf-8";

/// One element of `events`.
#[derive(Debug)]
pub(crate) enum EventEntry {
    /// A JSON object, read into the fields `Event::parse` checks.
    Object(Box<EventInput>),
    /// Any other JSON value.
    NotObject,
}

impl<'de> Deserialize<'de> for EventEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = EventEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EventEntry, A::Error> {
                EventInput::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|input| EventEntry::Object(Box::new(input)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventEntry, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(EventEntry::NotObject)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<EventEntry, E> {
                Ok(EventEntry::NotObject)
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<EventEntry, E> {
                Ok(EventEntry::NotObject)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<EventEntry, E> {
                Ok(EventEntry::NotObject)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<EventEntry, E> {
                Ok(EventEntry::NotObject)
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<EventEntry, E> {
                Ok(EventEntry::NotObject)
            }

            fn visit_unit<E: de::Error>(self) -> Result<EventEntry, E> {
                Ok(EventEntry::NotObject)
            }

            fn visit_none<E: de::Error>(self) -> Result<EventEntry, E> {
                Ok(EventEntry::NotObject)
            }
        }

        d.deserialize_any(EntryVisitor)
    }
}

/// The request body, documented as [`IngestRequest`].
#[derive(Debug, serde::Deserialize)]
pub(crate) struct IngestBody {
    pub(crate) events: Vec<EventEntry>,
}

impl Payload for IngestBody {
    const CONTENT_TYPE: &'static str = JSON;

    fn check_content_type(content_type: &str) -> bool {
        <poem_openapi::payload::Json<IngestRequest> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        IngestRequest::schema_ref()
    }

    fn register(registry: &mut Registry) {
        IngestRequest::register(registry);
    }
}

impl ParsePayload for IngestBody {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = <Vec<u8> as poem::FromRequest>::from_request(request, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| body_error(&bytes, &e).into())
    }
}

// The two-argument form: the one-argument arm calls the macro unqualified, which only
// resolves inside poem-openapi.
poem_openapi::impl_apirequest_for_payload!(IngestBody,);

/// A parse failure of the whole body, naming `events` when the body is a JSON object whose
/// `events` is missing or not an array, else `body`. Only failures pay for the second look.
fn body_error(bytes: &[u8], e: &serde_json::Error) -> ApiError {
    let (field, message) = if e.is_syntax() || e.is_eof() {
        ("body", format!("is not valid JSON: {e}"))
    } else {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(map)) => match map.get("events") {
                None => ("events", "is required".to_owned()),
                Some(v) if !v.is_array() => ("events", "must be an array of events".to_owned()),
                Some(_) => ("events", e.to_string()),
            },
            Ok(_) => (
                "body",
                "must be a JSON object with an `events` array".to_owned(),
            ),
            Err(_) => ("body", e.to_string()),
        }
    };
    ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", message).with_field(field)
}

/// A JSON response serialized straight from `T` (documented with `T`'s schema).
#[derive(Debug)]
pub struct SerdeJson<T>(pub T);

impl<T: Type + Send> Payload for SerdeJson<T> {
    const CONTENT_TYPE: &'static str = JSON;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Serialize + Send> IntoResponse for SerdeJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => Response::builder().content_type(JSON).body(body),
            Err(e) => ApiError::internal(e).into_response(),
        }
    }
}
