//! Sessions and users for ingested events that lack them (core's `session` module does the
//! deriving): the secret key of pseudonymous user ids, and this process's recent sessions
//! per user.
//!
//! The derived sessions live in this process: behind several replicas a user's events must
//! reach one replica (sticky routing) or carry their own `session_id` for sessions to span
//! them; the user-id fallback is the same on every replica that shares
//! `ANALYTICS_USER_ID_KEY`.

use std::collections::HashMap;
use std::sync::Mutex;

use analytics_core::ProjectId;
use analytics_core::session::UserSessions;
use chrono::{DateTime, Duration, NaiveDate, Utc};

/// The secret that pseudonymous user ids are keyed with (never logged).
pub struct UserIdKey(Vec<u8>);

impl UserIdKey {
    /// A key from configuration.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self(key.into())
    }

    /// A random key (ids then differ between processes and restarts).
    pub fn random() -> Self {
        let mut bytes = vec![0u8; 32];
        // Without randomness the ids are still keyed per day, only guessable.
        let _ = getrandom::fill(&mut bytes);
        Self(bytes)
    }

    /// The pseudonymous id of a client on `day`.
    pub fn user_id(
        &self,
        day: NaiveDate,
        project: &ProjectId,
        ip: &str,
        user_agent: &str,
    ) -> String {
        analytics_core::session::pseudonymous_user_id(&self.0, day, project, ip, user_agent)
    }
}

impl std::fmt::Debug for UserIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserIdKey(***)")
    }
}

/// The most users whose sessions are remembered; past it, users idle for a day are dropped.
const MAX_USERS: usize = 200_000;

/// Recent derived sessions per (project, user).
#[derive(Debug, Default)]
pub struct SessionTracker(Mutex<HashMap<(ProjectId, String), UserSessions>>);

impl SessionTracker {
    /// The session id of an event of `user` at `at` (see `UserSessions::assign`).
    pub fn assign(
        &self,
        project: &ProjectId,
        user: &str,
        at: DateTime<Utc>,
        timeout: Duration,
    ) -> String {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_USERS {
            let newest = all
                .values()
                .filter_map(|u| u.0.iter().map(|s| s.end).max())
                .max()
                .unwrap_or(at);
            all.retain(|_, u| u.0.iter().any(|s| s.end > newest - Duration::days(1)));
            if all.len() >= MAX_USERS {
                all.clear();
            }
        }
        all.entry((project.clone(), user.to_owned()))
            .or_default()
            .assign(project, user, at, timeout)
    }
}
