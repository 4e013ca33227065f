//! Error types of the core: port errors callers can act on, and field-level validation errors.

use std::fmt;

/// The error every store port returns.
///
/// The variants are kinds a caller can act on, not causes: adapters convert their driver
/// errors into these at the boundary, so no `sqlx::Error` (or any other driver type) crosses
/// a port.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The input was rejected; `field` names the offending field.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The addressed record does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The write conflicts with the current state (duplicate key, stale version, illegal
    /// state transition). Retrying the same write will fail again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backing service cannot be reached or is overloaded. Retrying later may succeed;
    /// nothing was committed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or a broken invariant in the store (corrupt row, unexpected driver state).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::NotFound`] naming what was looked up.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Result alias for port calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field, e.g. `payload.latency_ms` or `payload.items[2].quantity`.
    pub field: String,
    /// What is wrong with it, lowercase, no trailing period.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one input, one entry per problem (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The problems, in the order they were found.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// The first problem (there is always one).
    pub fn first(&self) -> Option<&FieldError> {
        self.0.first()
    }

    /// Whether some problem names exactly `field`.
    pub fn has_field(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::Invalid {
            field: e.field,
            reason: e.message,
        }
    }
}

impl From<ValidationErrors> for Error {
    fn from(e: ValidationErrors) -> Self {
        match e.0.into_iter().next() {
            Some(first) => first.into(),
            None => Error::invalid("input", "invalid"),
        }
    }
}
