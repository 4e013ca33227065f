//! Projects (tenants) with their settings, and API keys kept only as SHA-256 hashes.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::error::FieldError;
use crate::ids::ProjectId;
use crate::sampling::{SamplingSettings, SamplingStrategy, SourceSettings};

/// The longest raw retention a project may have, in days. It bounds how old an accepted
/// event can be (see [`crate::event::AgeLimit`]), hence how many days of raw events (day
/// partitions, in PostgreSQL) a store ever holds.
pub const MAX_RETENTION_DAYS: u32 = 400;

/// The default inactivity gap that ends a derived session, in minutes.
pub const DEFAULT_SESSION_TIMEOUT_MINUTES: u32 = 60;

/// Per-project ingest rate limits; `None`: no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Events requests per second per API key (or per token subject).
    pub per_key_per_second: Option<u32>,
    /// Ingest requests per minute per client IP.
    pub per_ip_per_minute: Option<u32>,
}

/// Per-project settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectSettings {
    /// Days raw events are kept before retention deletes them (rollups are kept); 1 to
    /// [`MAX_RETENTION_DAYS`]. Events older than this are not accepted.
    pub retention_days: u32,
    /// The project's sampling rate, in `(0, 1]`: kept equal to `sampling.rate` (the column
    /// older code reads). A stored rate below 1 without `sampling` means random sampling.
    pub sample_rate: f64,
    /// The project's currency (ISO 4217), when set.
    pub currency: Option<String>,
    /// The inactivity gap after which a derived session ends.
    pub session_timeout_minutes: u32,
    /// Origins allowed to ingest from browsers (CORS); empty: none.
    pub allowed_origins: Vec<String>,
    /// Ingest rate limits.
    pub rate_limit: RateLimitSettings,
    /// Sampling at ingest.
    pub sampling: SamplingSettings,
    /// Event sources, by name, with their sampling overrides.
    pub sources: BTreeMap<String, SourceSettings>,
}

impl Default for ProjectSettings {
    fn default() -> Self {
        Self {
            retention_days: 7,
            sample_rate: 1.0,
            currency: None,
            session_timeout_minutes: DEFAULT_SESSION_TIMEOUT_MINUTES,
            allowed_origins: Vec::new(),
            rate_limit: RateLimitSettings::default(),
            sampling: SamplingSettings::default(),
            sources: BTreeMap::new(),
        }
    }
}

impl ProjectSettings {
    /// The raw retention as a duration. A stored value outside `1..=MAX_RETENTION_DAYS`
    /// (written before the bound existed, or without [`Self::validate`]) is clamped, so
    /// retention and the ingest age limit never go past the bound.
    pub fn retention(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.retention_days.clamp(1, MAX_RETENTION_DAYS)))
    }

    /// Checks ranges; one error per problem.
    pub fn validate(&self) -> Result<(), crate::ValidationErrors> {
        let mut errors = Vec::new();
        if !(1..=MAX_RETENTION_DAYS).contains(&self.retention_days) {
            errors.push(FieldError::new(
                "retention_days",
                format!("must be from 1 to {MAX_RETENTION_DAYS}"),
            ));
        }
        if !(self.sample_rate.is_finite() && self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            errors.push(FieldError::new(
                "sample_rate",
                "must be greater than 0 and at most 1",
            ));
        }
        if !(1..=1440).contains(&self.session_timeout_minutes) {
            errors.push(FieldError::new(
                "session_timeout_minutes",
                "must be from 1 to 1440",
            ));
        }
        if let Some(c) = &self.currency
            && !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            errors.push(FieldError::new(
                "currency",
                "must be an ISO 4217 code (3 uppercase letters)",
            ));
        }
        for (i, o) in self.allowed_origins.iter().enumerate() {
            let ok = o == "*"
                || ((o.starts_with("https://") || o.starts_with("http://"))
                    && !o.ends_with('/')
                    && !o.contains(char::is_whitespace));
            if !ok {
                errors.push(FieldError::new(
                    format!("allowed_origins[{i}]"),
                    "must be `*` or an origin such as https://shop.example.com",
                ));
            }
        }
        for (name, rate) in [
            (
                "rate_limit.per_key_per_second",
                self.rate_limit.per_key_per_second,
            ),
            (
                "rate_limit.per_ip_per_minute",
                self.rate_limit.per_ip_per_minute,
            ),
        ] {
            if rate == Some(0) {
                errors.push(FieldError::new(name, "must be at least 1 (null: no limit)"));
            }
        }
        self.sampling.check("sampling.", &mut errors);
        for (name, source) in &self.sources {
            if let Some(s) = &source.sampling {
                s.check(&format!("sources.{name}.sampling."), &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(crate::ValidationErrors(errors))
        }
    }

    /// Rebuilds settings from a store's columns: `retention_days` and `sample_rate` have
    /// their own columns, everything else is the JSON document `extra` (absent in rows
    /// written before it existed). The error says what could not be read.
    pub fn from_stored(
        retention_days: u32,
        sample_rate: f64,
        extra: Option<&str>,
    ) -> Result<Self, String> {
        let mut settings: Self = match extra {
            None => Self::default(),
            Some(json) => serde_json::from_str(json).map_err(|e| format!("settings: {e}"))?,
        };
        settings.retention_days = retention_days;
        settings.sample_rate = sample_rate;
        Ok(settings.normalized())
    }

    /// The JSON document stores keep beside the `retention_days` and `sample_rate` columns.
    pub fn stored_extra(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reconciles the legacy `sample_rate` with `sampling` after loading or changing
    /// settings: a legacy rate below 1 without a strategy means random sampling at that
    /// rate; otherwise `sample_rate` mirrors the strategy's rate (1 without sampling).
    pub fn normalized(mut self) -> Self {
        if self.sampling.strategy == SamplingStrategy::None
            && self.sample_rate < 1.0
            && self.sampling.rate >= 1.0
        {
            self.sampling.strategy = SamplingStrategy::Random;
            self.sampling.rate = self.sample_rate;
        }
        self.sample_rate = match self.sampling.strategy {
            SamplingStrategy::None => 1.0,
            _ => self.sampling.rate,
        };
        self
    }
}

/// A project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Its slug.
    pub id: ProjectId,
    /// Display name.
    pub name: String,
    /// Settings.
    pub settings: ProjectSettings,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A freshly generated API key: the only moment its secret exists in clear.
///
/// `Debug` and `Display` print only the public prefix, so the secret cannot be logged by
/// accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

/// Length of the public, non-secret prefix kept with a key (`ak_` + 8 characters).
pub const API_KEY_PREFIX_LEN: usize = 11;

impl ApiKeySecret {
    /// A new random key: `ak_` followed by 256 random bits from the operating system's
    /// generator, in lowercase hex (64 characters).
    pub fn generate() -> Result<Self, crate::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| crate::Error::Internal(format!("no randomness available: {e}")))?;
        Ok(Self(format!("ak_{}", hex::encode(bytes))))
    }

    /// Wraps a key presented by a client.
    pub fn from_presented(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The clear text, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The public prefix shown in listings.
    pub fn prefix(&self) -> String {
        self.0.chars().take(API_KEY_PREFIX_LEN).collect()
    }

    /// The hash stored and looked up.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.prefix())
    }
}

/// The lowercase hex SHA-256 of a key: what stores keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApiKeyHash(pub String);

/// A stored API key (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Its id.
    pub id: Uuid,
    /// The project it ingests into.
    pub project: ProjectId,
    /// A label.
    pub name: String,
    /// Public prefix, to recognise the key in listings.
    pub prefix: String,
    /// SHA-256 of the key.
    pub hash: ApiKeyHash,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When revoked; a revoked key never authenticates again.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the key last authenticated a request (recorded when the server's key cache
    /// looks it up in the store, so to within the cache's TTL).
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// Whether the key may be used.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_hashed_and_never_debug_printed() {
        let a = ApiKeySecret::generate().unwrap();
        let b = ApiKeySecret::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with("ak_"));
        assert_eq!(a.expose().len(), 67);
        assert_eq!(a.hash(), ApiKeySecret::from_presented(a.expose()).hash());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash().0.len(), 64);
        let dbg = format!("{a:?}");
        assert!(!dbg.contains(&a.expose()[API_KEY_PREFIX_LEN..]), "{dbg}");
    }

    #[test]
    fn settings_are_checked() {
        assert!(ProjectSettings::default().validate().is_ok());
        let bad = ProjectSettings {
            retention_days: 0,
            sample_rate: f64::NAN,
            ..ProjectSettings::default()
        };
        let e = bad.validate().unwrap_err();
        assert!(e.has_field("retention_days") && e.has_field("sample_rate"));
    }

    #[test]
    fn retention_is_bounded_by_configuration() {
        let at = |days| ProjectSettings {
            retention_days: days,
            ..ProjectSettings::default()
        };
        assert!(at(MAX_RETENTION_DAYS).validate().is_ok());
        let e = at(MAX_RETENTION_DAYS + 1).validate().unwrap_err();
        assert_eq!(e.first().unwrap().field, "retention_days");
        assert_eq!(e.first().unwrap().message, "must be from 1 to 400");
        // A stored value past the bound is clamped wherever it is used.
        assert_eq!(at(3650).retention(), chrono::Duration::days(400));
        assert_eq!(at(0).retention(), chrono::Duration::days(1));
        assert_eq!(at(7).retention(), chrono::Duration::days(7));
    }
}
