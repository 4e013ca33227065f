//! Sessions and users for events that lack them: a session id derived from the user and an
//! inactivity window, and a pseudonymous user id from a keyed hash of the client's IP and
//! User-Agent under a salt that changes every UTC day. Pure: the caller keeps the state and
//! passes the key and the times.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sha2::{Digest as _, Sha256};

use crate::ids::ProjectId;

/// How many recent sessions are remembered per user (late events find theirs among them).
pub const SESSIONS_PER_USER: usize = 8;

/// One derived session: the span of its events and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedSession {
    /// The session id given to its events.
    pub id: String,
    /// The first event's time.
    pub start: DateTime<Utc>,
    /// The last event's time.
    pub end: DateTime<Utc>,
}

/// The recent sessions of one user, newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserSessions(pub Vec<DerivedSession>);

fn hex_prefix(digest: &[u8], bytes: usize) -> String {
    hex::encode(&digest[..bytes])
}

impl UserSessions {
    /// The session of an event of `user` at `at`: the session whose span, widened by
    /// `timeout` on both sides, holds `at` (so an event arriving late or out of order joins
    /// the session it belongs to), else a new one. Gaps of more than `timeout` between
    /// events start a new session; exactly `timeout` does not.
    pub fn assign(
        &mut self,
        project: &ProjectId,
        user: &str,
        at: DateTime<Utc>,
        timeout: Duration,
    ) -> String {
        if let Some(s) = self
            .0
            .iter_mut()
            .find(|s| s.start - timeout <= at && at <= s.end + timeout)
        {
            s.start = s.start.min(at);
            s.end = s.end.max(at);
            return s.id.clone();
        }
        // The id depends on the user and the first event only, so replaying the same events
        // in the same order gives the same ids.
        let digest = Sha256::digest(
            format!("{project}\u{0}{user}\u{0}{}", at.timestamp_micros()).as_bytes(),
        );
        let id = format!("ds_{}", hex_prefix(&digest, 12));
        self.0.push(DerivedSession {
            id: id.clone(),
            start: at,
            end: at,
        });
        self.0.sort_by_key(|s| s.start);
        if self.0.len() > SESSIONS_PER_USER {
            self.0.remove(0);
        }
        id
    }
}

/// The pseudonymous user id of a client without one: a hash, keyed with the server's secret
/// `key` and the UTC day `day`, of the project, the client IP and its User-Agent. Stable
/// within a day; unlinkable across days without the key; the IP is never stored.
pub fn pseudonymous_user_id(
    key: &[u8],
    day: NaiveDate,
    project: &ProjectId,
    ip: &str,
    user_agent: &str,
) -> String {
    // The day's salt, derived from the key: rotates at 00:00 UTC.
    let mut salt = Sha256::new();
    salt.update(key);
    salt.update(day.to_string().as_bytes());
    let salt = salt.finalize();
    let mut h = Sha256::new();
    for part in [
        &salt[..],
        project.as_str().as_bytes(),
        ip.as_bytes(),
        user_agent.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    format!("anon_{}", hex_prefix(&h.finalize(), 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn shop() -> ProjectId {
        ProjectId::parse("shop").unwrap()
    }

    #[test]
    fn gaps_just_under_and_over_the_timeout() {
        let timeout = Duration::minutes(60);
        let mut u = UserSessions::default();
        let first = u.assign(&shop(), "u1", at("2026-03-02T10:00:00Z"), timeout);
        let under = u.assign(&shop(), "u1", at("2026-03-02T10:59:59Z"), timeout);
        assert_eq!(
            first, under,
            "a gap just under the timeout keeps the session"
        );
        let exactly = u.assign(&shop(), "u1", at("2026-03-02T11:59:59Z"), timeout);
        assert_eq!(first, exactly, "a gap of exactly the timeout keeps it");
        let over = u.assign(&shop(), "u1", at("2026-03-02T13:00:00Z"), timeout);
        assert_ne!(
            first, over,
            "a gap just over the timeout starts a new session"
        );
    }

    #[test]
    fn out_of_order_events_join_their_session() {
        let timeout = Duration::minutes(30);
        let mut u = UserSessions::default();
        let morning = u.assign(&shop(), "u1", at("2026-03-02T09:00:00Z"), timeout);
        let noon = u.assign(&shop(), "u1", at("2026-03-02T12:00:00Z"), timeout);
        assert_ne!(morning, noon);
        // A late event of the morning joins the morning session, not the current one.
        assert_eq!(
            u.assign(&shop(), "u1", at("2026-03-02T09:20:00Z"), timeout),
            morning
        );
        // An event earlier than the first, within the timeout, joins it too.
        assert_eq!(
            u.assign(&shop(), "u1", at("2026-03-02T08:45:00Z"), timeout),
            morning
        );
        // The same events in the same order give the same ids.
        let mut again = UserSessions::default();
        assert_eq!(
            again.assign(&shop(), "u1", at("2026-03-02T09:00:00Z"), timeout),
            morning
        );
    }

    #[test]
    fn users_on_one_ip_get_their_own_ids_and_sessions() {
        let key = b"0123456789abcdef0123456789abcdef";
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let a = pseudonymous_user_id(key, day, &shop(), "203.0.113.7", "Firefox/140");
        let b = pseudonymous_user_id(key, day, &shop(), "203.0.113.7", "Safari/18");
        assert_ne!(a, b, "two browsers behind one IP are two users");
        assert!(!a.contains("203.0.113.7"));
        let mut sa = UserSessions::default();
        let mut sb = UserSessions::default();
        let t = at("2026-03-02T10:00:00Z");
        assert_ne!(
            sa.assign(&shop(), &a, t, Duration::minutes(60)),
            sb.assign(&shop(), &b, t, Duration::minutes(60))
        );
    }

    #[test]
    fn the_user_id_fallback_is_stable_within_a_day_and_rotates_with_the_salt() {
        let key = b"0123456789abcdef0123456789abcdef";
        let d1 = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let d2 = d1.succ_opt().unwrap();
        let id = |k: &[u8], d| pseudonymous_user_id(k, d, &shop(), "198.51.100.1", "UA");
        assert_eq!(id(key, d1), id(key, d1));
        assert_ne!(id(key, d1), id(key, d2), "the salt rotates daily");
        assert_ne!(id(key, d1), id(b"another key entirely, 32 bytes!!", d1));
        assert_ne!(
            id(key, d1),
            pseudonymous_user_id(
                key,
                d1,
                &ProjectId::parse("blog").unwrap(),
                "198.51.100.1",
                "UA"
            ),
            "projects cannot join their users"
        );
    }
}
