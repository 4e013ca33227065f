//! Authentication: HS256 JWT bearer tokens with roles, and per-project API keys.
//!
//! Tokens and keys are never logged: [`Secret`] redacts itself and the middleware logs only
//! the outcome.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use analytics_core::ProjectId;
use analytics_core::ports::Store;
use analytics_core::project::{ApiKeyHash, ApiKeySecret};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::Request;
use poem::http::header;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A secret value whose `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The clear text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A role a JWT may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Business dashboards.
    BusinessViewer,
    /// Sending events.
    Ingest,
}

impl Role {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::BusinessViewer => "business_viewer",
            Self::Ingest => "ingest",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Self::Admin),
            "business_viewer" => Ok(Self::BusinessViewer),
            "ingest" => Ok(Self::Ingest),
            other => Err(format!(
                "unknown role {other:?} (admin, business_viewer, ingest)"
            )),
        }
    }
}

/// The JWT claims this service reads and issues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject (user or service).
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Granted roles; unknown names are ignored.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The projects this token may touch; absent means every project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
}

impl Claims {
    /// The known roles granted.
    pub fn known_roles(&self) -> Vec<Role> {
        self.roles.iter().filter_map(|r| r.parse().ok()).collect()
    }
}

/// The shortest HS256 secret accepted, in bytes (RFC 7518 section 3.2: a key of at least
/// the hash output size).
pub const MIN_SECRET_BYTES: usize = 32;

/// How to make a good secret, for error messages.
pub const SECRET_HINT: &str = "generate one with `openssl rand -base64 48` or \
     `head -c 48 /dev/urandom | base64`";

/// The longest token lifetime the `token` command issues (10 years).
pub const MAX_TTL_SECS: i64 = 10 * 366 * 86_400;

/// JWT settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// HS256 key.
    pub secret: Secret,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Clock leeway in seconds (at most 30).
    pub leeway_secs: u64,
}

impl JwtSettings {
    /// Settings with a secret and no audience/issuer checks.
    pub fn new(secret: Secret) -> Self {
        Self {
            secret,
            audience: None,
            issuer: None,
            leeway_secs: 30,
        }
    }

    /// Refuses a secret shorter than [`MIN_SECRET_BYTES`]: HS256 tokens signed with a short
    /// key can be brute-forced offline from any one token.
    pub fn check_secret(&self) -> Result<(), SecretTooShort> {
        let len = self.secret.expose().len();
        if len < MIN_SECRET_BYTES {
            return Err(SecretTooShort(len));
        }
        Ok(())
    }

    fn validation(&self) -> Validation {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = self.leeway_secs.min(30);
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.audience {
            Some(a) => {
                v.set_audience(&[a]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        if let Some(i) = &self.issuer {
            v.set_issuer(&[i]);
            required.push("iss");
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// Verifies a token; the error is a client-safe reason.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let key = DecodingKey::from_secret(self.secret.expose().as_bytes());
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation())
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => "token has expired".to_owned(),
                    K::ImmatureSignature => "token is not valid yet".to_owned(),
                    K::InvalidSignature => "token signature is invalid".to_owned(),
                    K::InvalidAudience => "token audience is not accepted".to_owned(),
                    K::InvalidIssuer => "token issuer is not accepted".to_owned(),
                    K::MissingRequiredClaim(c) => format!("token lacks the {c} claim"),
                    K::InvalidAlgorithm => "token algorithm is not accepted".to_owned(),
                    _ => "token is malformed".to_owned(),
                }
            })
    }

    /// Signs a token for `sub` with `roles`, valid from `now` for `ttl_secs` (1 second to
    /// [`MAX_TTL_SECS`]).
    pub fn issue(
        &self,
        sub: &str,
        roles: &[Role],
        now: i64,
        ttl_secs: i64,
    ) -> Result<String, IssueError> {
        self.issue_scoped(sub, roles, None, now, ttl_secs)
    }

    /// Like [`issue`](Self::issue), limited to `projects` when given.
    pub fn issue_scoped(
        &self,
        sub: &str,
        roles: &[Role],
        projects: Option<&[ProjectId]>,
        now: i64,
        ttl_secs: i64,
    ) -> Result<String, IssueError> {
        self.check_secret()?;
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(IssueError::Ttl(ttl_secs));
        }
        let exp = now.checked_add(ttl_secs).ok_or(IssueError::Ttl(ttl_secs))?;
        let claims = Claims {
            sub: sub.to_owned(),
            exp,
            iat: Some(now),
            nbf: None,
            aud: self.audience.clone(),
            iss: self.issuer.clone(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            projects: projects.map(|p| p.iter().map(ToString::to_string).collect()),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.secret.expose().as_bytes()),
        )
        .map_err(|e| IssueError::Sign(e.to_string()))
    }
}

/// The JWT secret is too short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the JWT secret (ANALYTICS_JWT_SECRET) has {0} bytes; HS256 needs at least 32: {hint}",
    hint = SECRET_HINT
)]
pub struct SecretTooShort(pub usize);

/// Why a token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The secret is too short.
    #[error(transparent)]
    Secret(#[from] SecretTooShort),
    /// The lifetime is out of range.
    #[error("token lifetime must be from 1 second to 10 years, got {0} seconds")]
    Ttl(i64),
    /// Signing failed.
    #[error("signing the token failed: {0}")]
    Sign(String),
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    /// A JWT holder.
    User {
        /// `sub`.
        sub: String,
        /// Known roles.
        roles: Vec<Role>,
        /// The projects the token is limited to (`projects` claim); `None`: all.
        projects: Option<Vec<ProjectId>>,
    },
    /// A project API key (ingest only, bound to its project).
    ApiKey {
        /// The key's project.
        project: ProjectId,
        /// The key's id.
        key_id: uuid::Uuid,
    },
}

impl Identity {
    /// Whether a JWT identity holds `role` (API keys hold none).
    pub fn has_role(&self, role: Role) -> bool {
        matches!(self, Self::User { roles, .. } if roles.contains(&role))
    }

    /// Requires `role` (403 otherwise; an API key, which may only ingest, also gets 403
    /// whichever header carried it).
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.has_role(role) {
            Ok(())
        } else if matches!(self, Self::ApiKey { .. }) {
            Err(ApiError::forbidden(
                "api keys may only ingest events; this operation needs a JWT",
            ))
        } else {
            Err(ApiError::forbidden(format!(
                "this operation needs the {} role",
                role.as_str()
            )))
        }
    }

    /// Whether this identity may touch `project` (API keys: their own project; JWTs: every
    /// project unless a `projects` claim limits them).
    pub fn may_access(&self, project: &ProjectId) -> bool {
        match self {
            Self::ApiKey { project: own, .. } => own == project,
            Self::User { projects: None, .. } => true,
            Self::User {
                projects: Some(list),
                ..
            } => list.contains(project),
        }
    }
}

/// Active API keys looked up recently, by hash, so that ingest does not query the store on
/// every request. A key revoked in the store keeps working in this process until its entry
/// expires (the TTL, 30 s by default); a zero TTL disables the cache. Unknown and revoked
/// keys are never cached.
#[derive(Clone)]
pub struct ApiKeyCache(Option<moka::future::Cache<ApiKeyHash, (ProjectId, uuid::Uuid)>>);

impl ApiKeyCache {
    /// Entries live `ttl`; at most 10,000 keys are kept.
    pub fn new(ttl: Duration) -> Self {
        Self(crate::state::ttl_cache(ttl))
    }
}

impl fmt::Debug for ApiKeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(c) => write!(f, "ApiKeyCache({} keys)", c.entry_count()),
            None => f.write_str("ApiKeyCache(off)"),
        }
    }
}

impl ApiKeyCache {
    /// Forgets a key (after it was revoked here; other replicas within the TTL).
    pub async fn forget(&self, hash: &ApiKeyHash) {
        if let Some(cache) = &self.0 {
            cache.invalidate(hash).await;
        }
    }
}

/// Reads the credentials of `req` and resolves them: `Ok(None)` when none were presented.
pub async fn authenticate(
    req: &Request,
    jwt: &JwtSettings,
    store: &dyn Store,
    keys: &ApiKeyCache,
) -> Result<Option<Identity>, ApiError> {
    let api_key = req
        .headers()
        .get("x-api-key")
        .map(|v| v.to_str().map(str::trim).unwrap_or(""));
    let bearer = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| ApiError::unauthorized("authorization header is not valid"))?;
            let (scheme, token) = v
                .split_once(' ')
                .ok_or_else(|| ApiError::unauthorized("authorization must be `Bearer <token>`"))?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::unauthorized(
                    "authorization must be `Bearer <token>`",
                ));
            }
            Some(token.trim())
        }
    };
    if let Some(key) = api_key {
        return api_key_identity(key, store, keys).await.map(Some);
    }
    match bearer {
        None => Ok(None),
        Some(token) if token.starts_with("ak_") => {
            api_key_identity(token, store, keys).await.map(Some)
        }
        Some(token) => {
            let claims = jwt.verify(token).map_err(ApiError::unauthorized)?;
            let projects = match &claims.projects {
                None => None,
                Some(list) => Some(
                    list.iter()
                        .map(|p| ProjectId::parse(p.as_str()))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| {
                            ApiError::unauthorized("token has an invalid projects claim")
                        })?,
                ),
            };
            Ok(Some(Identity::User {
                roles: claims.known_roles(),
                sub: claims.sub,
                projects,
            }))
        }
    }
}

async fn api_key_identity(
    key: &str,
    store: &dyn Store,
    keys: &ApiKeyCache,
) -> Result<Identity, ApiError> {
    if key.is_empty() {
        return Err(ApiError::unauthorized("api key is empty"));
    }
    let hash = ApiKeySecret::from_presented(key).hash();
    if let Some(cache) = &keys.0
        && let Some((project, key_id)) = cache.get(&hash).await
    {
        return Ok(Identity::ApiKey { project, key_id });
    }
    match store.api_key_by_hash(&hash).await? {
        Some(rec) if rec.is_active() => {
            if let Some(cache) = &keys.0 {
                cache.insert(hash, (rec.project.clone(), rec.id)).await;
            }
            // Last use is recorded on a cache miss: to within the cache's TTL. A failure to
            // record it does not refuse the request.
            let now = analytics_core::Clock::now(&analytics_core::SystemClock);
            if let Err(e) = store.touch_api_key(rec.id, now).await {
                tracing::warn!(error = %e, key = %rec.id, "could not record the api key's use");
            }
            Ok(Identity::ApiKey {
                project: rec.project,
                key_id: rec.id,
            })
        }
        Some(_) => Err(ApiError::unauthorized("api key has been revoked")),
        None => Err(ApiError::unauthorized("api key is not known")),
    }
}

/// Parses a duration like `90s`, `30m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration unit in {s:?} (s, m, h, d)")),
    };
    if n <= 0 {
        return Err("duration must be positive".into());
    }
    n.checked_mul(mult)
        .filter(|s| *s <= MAX_TTL_SECS)
        .ok_or_else(|| format!("duration {s:?} is longer than 10 years"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_expire() {
        let jwt = JwtSettings::new(Secret::new("s3cret-s3cret-s3cret-s3cret-s3cret"));
        let now = chrono::Utc::now().timestamp();
        let t = jwt.issue("alice", &[Role::Admin], now, 60).unwrap();
        let c = jwt.verify(&t).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.known_roles(), [Role::Admin]);
        let old = jwt.issue("alice", &[Role::Admin], now - 3600, 60).unwrap();
        assert_eq!(jwt.verify(&old).unwrap_err(), "token has expired");
        let other = JwtSettings::new(Secret::new("other-other-other-other-other-other"));
        assert!(other.verify(&t).is_err());
        assert_eq!(format!("{:?}", jwt.secret), "Secret(***)");
    }

    #[test]
    fn audience_issuer_and_nbf_are_checked_when_configured() {
        let now = chrono::Utc::now().timestamp();
        let plain = JwtSettings::new(Secret::new(KEY));
        let strict = JwtSettings {
            audience: Some("analytics".into()),
            issuer: Some("idp".into()),
            ..JwtSettings::new(Secret::new(KEY))
        };
        let without = plain.issue("a", &[Role::Admin], now, 60).unwrap();
        assert!(strict.verify(&without).is_err());
        let with = strict.issue("a", &[Role::Admin], now, 60).unwrap();
        assert!(strict.verify(&with).is_ok());
        let wrong = JwtSettings {
            audience: Some("other".into()),
            ..strict.clone()
        }
        .issue("a", &[Role::Admin], now, 60)
        .unwrap();
        assert_eq!(
            strict.verify(&wrong).unwrap_err(),
            "token audience is not accepted"
        );
        let claims = Claims {
            sub: "a".into(),
            exp: now + 600,
            iat: None,
            nbf: Some(now + 300),
            aud: None,
            iss: None,
            roles: vec![],
            projects: None,
        };
        let early = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(KEY.as_bytes()),
        )
        .unwrap();
        assert_eq!(plain.verify(&early).unwrap_err(), "token is not valid yet");
    }

    const KEY: &str = "a-test-key-of-at-least-thirty-two-bytes";

    #[test]
    fn ttl_parses() {
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("0s").is_err());
    }

    #[test]
    fn huge_token_lifetimes_are_refused_instead_of_overflowing() {
        assert!(parse_ttl("9223372036854775807d").is_err());
        assert!(parse_ttl("99999999999999999999").is_err());
        assert!(parse_ttl("3650d").is_ok());
        assert!(parse_ttl("3700000d").is_err());
        let jwt = JwtSettings::new(Secret::new(KEY));
        assert_eq!(
            jwt.issue("a", &[Role::Admin], i64::MAX - 10, 60),
            Err(IssueError::Ttl(60))
        );
        assert_eq!(
            jwt.issue("a", &[Role::Admin], 0, i64::MAX),
            Err(IssueError::Ttl(i64::MAX))
        );
    }

    #[test]
    fn short_jwt_secrets_are_refused_for_signing_and_serving() {
        for short in ["", "x", "31-bytes-xxxxxxxxxxxxxxxxxxxxxx"] {
            let jwt = JwtSettings::new(Secret::new(short));
            let err = jwt.check_secret().unwrap_err();
            assert!(err.to_string().contains("at least 32"), "{err}");
            assert!(err.to_string().contains("openssl rand"), "{err}");
            assert!(matches!(
                jwt.issue("a", &[Role::Admin], 0, 60),
                Err(IssueError::Secret(_))
            ));
        }
        assert!(JwtSettings::new(Secret::new(KEY)).check_secret().is_ok());
    }

    #[test]
    fn a_projects_claim_limits_the_identity() {
        let jwt = JwtSettings::new(Secret::new(KEY));
        let shop = ProjectId::parse("shop").unwrap();
        let blog = ProjectId::parse("blog").unwrap();
        let now = chrono::Utc::now().timestamp();
        let t = jwt
            .issue_scoped(
                "a",
                &[Role::Ingest],
                Some(std::slice::from_ref(&shop)),
                now,
                60,
            )
            .unwrap();
        let claims = jwt.verify(&t).unwrap();
        assert_eq!(claims.projects, Some(vec!["shop".to_owned()]));
        let id = Identity::User {
            sub: "a".into(),
            roles: vec![Role::Ingest],
            projects: Some(vec![shop.clone()]),
        };
        assert!(id.may_access(&shop));
        assert!(!id.may_access(&blog));
    }
}
