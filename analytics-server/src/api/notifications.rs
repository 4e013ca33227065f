//! Notifications (any signed-in user, for themselves; admin for anyone): the caller's in-app
//! notifications (list with the unread count, mark one or all read) and notification
//! preferences (the caller's own; an admin's view of any user's or team's, teams with their
//! members). Validation errors name the field as the client wrote it (`email`, `phone`,
//! `channels.warning[1]`, `quiet_hours.timezone`, `members[0]`).

use analytics_core::alert::Severity;
use analytics_core::ids::{EmailAddress, PhoneNumber, UserId, WebhookUrl};
use analytics_core::notification::{
    Channel, InAppNotification, NotificationPreferences, PreferenceSubject, QuietHours,
};
use analytics_core::{Clock, PageRequest, SystemClock};
use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::alerts::{SeverityBody, StrictJson};
use super::events::BearerAuth;
use super::request::{caller, default_limit, page_request, require_admin};
use super::responses::{ApiResult, Body, NotFound};
use crate::error::ApiError;
use crate::state::AppState;

/// The notification endpoints.
#[derive(Debug)]
pub struct NotificationsApi {
    pub(crate) state: AppState,
}

/// One in-app notification.
#[derive(Debug, Clone, Object)]
pub struct InAppBody {
    /// Its id.
    pub id: Uuid,
    /// The alert it is about.
    #[oai(nullable)]
    pub alert_id: Option<Uuid>,
    /// Urgency.
    pub severity: SeverityBody,
    /// Subject.
    pub title: String,
    /// Text.
    pub body: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When the caller read it.
    #[oai(nullable)]
    pub read_at: Option<DateTime<Utc>>,
}

impl From<InAppNotification> for InAppBody {
    fn from(n: InAppNotification) -> Self {
        Self {
            id: n.id,
            alert_id: n.alert_id,
            severity: n.severity.into(),
            title: n.title,
            body: n.body,
            created_at: n.created_at,
            read_at: n.read_at,
        }
    }
}

/// A page of the caller's in-app notifications.
#[derive(Debug, Clone, Object)]
pub struct InAppPage {
    /// Newest first.
    pub items: Vec<InAppBody>,
    /// How many of the caller's notifications are unread (all pages).
    pub unread: u64,
    /// The cursor of the next page; null on the last.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// The channels wanted per severity (`in_app`, `slack`, `email`, `sms`).
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct SeverityChannels {
    /// For info alerts; null or absent: the default (`in_app`).
    #[oai(nullable)]
    pub info: Option<Vec<String>>,
    /// For warnings; null or absent: the default (`in_app`, `slack`, `email`).
    #[oai(nullable)]
    pub warning: Option<Vec<String>>,
    /// For critical alerts; null or absent: the default (all four).
    #[oai(nullable)]
    pub critical: Option<Vec<String>>,
}

/// A daily quiet period: only in-app notifications, except for critical alerts.
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct QuietHoursBody {
    /// Local start, `HH:MM`.
    pub start: String,
    /// Local end, `HH:MM` (exclusive; before `start` spans midnight).
    pub end: String,
    /// IANA time zone (`Europe/Berlin`, `UTC`).
    pub timezone: String,
}

/// Notification preferences as answered: `channels` lists every severity's effective
/// channels.
#[derive(Debug, Clone, Object)]
pub struct PreferencesBody {
    /// Channels per severity.
    pub channels: SeverityChannels,
    /// Email address.
    #[oai(nullable)]
    pub email: Option<String>,
    /// Phone for SMS (E.164).
    #[oai(nullable)]
    pub phone: Option<String>,
    /// Own Slack webhook, shown as its label (`slack:<host>`); the URL is a secret.
    #[oai(nullable)]
    pub slack_webhook: Option<String>,
    /// Quiet hours.
    #[oai(nullable)]
    pub quiet_hours: Option<QuietHoursOut>,
    /// Only critical alerts reach this subject.
    pub mute_non_critical: bool,
    /// A team's members (user ids); empty for a user.
    pub members: Vec<String>,
    /// Last change; null when nothing was set (the defaults).
    #[oai(nullable)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Quiet hours as answered.
#[derive(Debug, Clone, Object)]
pub struct QuietHoursOut {
    /// Local start, `HH:MM`.
    pub start: String,
    /// Local end, `HH:MM`.
    pub end: String,
    /// IANA time zone.
    pub timezone: String,
}

/// Notification preferences as submitted (replaced whole).
#[derive(Debug, Clone, Object, serde::Deserialize)]
pub struct PreferencesRequest {
    /// Channels per severity; null or absent: the defaults.
    #[oai(nullable)]
    pub channels: Option<SeverityChannels>,
    /// Email address.
    #[oai(nullable)]
    pub email: Option<String>,
    /// Phone for SMS in E.164 form (`+14155550100`).
    #[oai(nullable)]
    pub phone: Option<String>,
    /// Own Slack webhook (https).
    #[oai(nullable)]
    pub slack_webhook: Option<String>,
    /// Quiet hours.
    #[oai(nullable)]
    pub quiet_hours: Option<QuietHoursBody>,
    /// Only critical alerts (default false).
    #[oai(nullable)]
    pub mute_non_critical: Option<bool>,
    /// A team's members (user ids, at most 500, each 1 to 256 bytes without control
    /// characters); ignored for a user.
    #[oai(nullable)]
    pub members: Option<Vec<String>>,
}

/// `POST .../read`, `.../read-all`.
#[derive(Debug, ApiResponse)]
pub enum Marked {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

fn parse_channels(field: &str, names: &[String]) -> Result<Vec<Channel>, ApiError> {
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let c: Channel = name.parse().map_err(|_| {
            ApiError::invalid(
                format!("channels.{field}[{i}]"),
                "must be one of in_app, slack, email, sms",
            )
        })?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

impl PreferencesRequest {
    fn into_core(
        self,
        subject: PreferenceSubject,
        now: DateTime<Utc>,
    ) -> Result<NotificationPreferences, ApiError> {
        let mut channels = Vec::new();
        if let Some(c) = &self.channels {
            for (severity, names) in [
                (Severity::Info, &c.info),
                (Severity::Warning, &c.warning),
                (Severity::Critical, &c.critical),
            ] {
                if let Some(names) = names {
                    channels.push((severity, parse_channels(severity.as_str(), names)?));
                }
            }
        }
        let email = self
            .email
            .filter(|s| !s.is_empty())
            .map(|s| EmailAddress::parse(s).map_err(|e| ApiError::invalid("email", e.message)))
            .transpose()?;
        let phone = self
            .phone
            .filter(|s| !s.is_empty())
            .map(|s| PhoneNumber::parse(s).map_err(|e| ApiError::invalid("phone", e.message)))
            .transpose()?;
        let slack_webhook = self
            .slack_webhook
            .filter(|s| !s.is_empty())
            .map(|s| {
                if !s.starts_with("https://") {
                    return Err(ApiError::invalid("slack_webhook", "must be an https URL"));
                }
                WebhookUrl::parse(s).map_err(|e| ApiError::invalid("slack_webhook", e.message))
            })
            .transpose()?;
        let quiet_hours = self
            .quiet_hours
            .map(|q| {
                QuietHours::parse(&q.start, &q.end, &q.timezone)
                    .map_err(|e| ApiError::invalid(e.field, e.message))
            })
            .transpose()?;
        let members = match (&subject, self.members) {
            (PreferenceSubject::User(_), _) | (_, None) => Vec::new(),
            (PreferenceSubject::Team(_), Some(m)) => {
                if m.len() > 500 {
                    return Err(ApiError::invalid("members", "at most 500 members"));
                }
                let mut out: Vec<UserId> = Vec::with_capacity(m.len());
                for (i, u) in m.into_iter().enumerate() {
                    let u = UserId::parse(u)
                        .map_err(|e| ApiError::invalid(format!("members[{i}]"), e.message))?;
                    if !out.contains(&u) {
                        out.push(u);
                    }
                }
                out
            }
        };
        Ok(NotificationPreferences {
            subject,
            channels,
            email,
            phone,
            slack_webhook,
            mute_non_critical: self.mute_non_critical.unwrap_or(false),
            quiet_hours,
            members,
            updated_at: now,
        })
    }
}

fn preferences_body(p: Option<NotificationPreferences>) -> PreferencesBody {
    let names = |cs: Vec<Channel>| cs.into_iter().map(|c| c.as_str().to_owned()).collect();
    let effective = |s: Severity| match &p {
        Some(p) => p
            .channels
            .iter()
            .find(|(sev, _)| *sev == s)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| Channel::defaults_for(s).to_vec()),
        None => Channel::defaults_for(s).to_vec(),
    };
    PreferencesBody {
        channels: SeverityChannels {
            info: Some(names(effective(Severity::Info))),
            warning: Some(names(effective(Severity::Warning))),
            critical: Some(names(effective(Severity::Critical))),
        },
        email: p
            .as_ref()
            .and_then(|p| p.email.as_ref().map(|e| e.to_string())),
        phone: p
            .as_ref()
            .and_then(|p| p.phone.as_ref().map(|e| e.to_string())),
        slack_webhook: p.as_ref().and_then(|p| {
            p.slack_webhook
                .clone()
                .map(|w| analytics_core::notification::Recipient::SlackWebhook(w).label())
        }),
        quiet_hours: p.as_ref().and_then(|p| {
            p.quiet_hours.as_ref().map(|q| QuietHoursOut {
                start: q.start.format("%H:%M").to_string(),
                end: q.end.format("%H:%M").to_string(),
                timezone: q.timezone.clone(),
            })
        }),
        mute_non_critical: p.as_ref().is_some_and(|p| p.mute_non_critical),
        members: p
            .as_ref()
            .map(|p| p.members.iter().map(|m| m.to_string()).collect())
            .unwrap_or_default(),
        updated_at: p.as_ref().map(|p| p.updated_at),
    }
}

fn user_subject(user: String, field: &str) -> Result<PreferenceSubject, ApiError> {
    UserId::parse(user)
        .map(PreferenceSubject::User)
        .map_err(|e| ApiError::invalid(field, e.message))
}

fn team_subject(team: String) -> Result<PreferenceSubject, ApiError> {
    let t = team.trim();
    if t.is_empty() || t.len() > 200 || t.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "team",
            "must be 1 to 200 printable characters",
        ));
    }
    Ok(PreferenceSubject::Team(t.to_owned()))
}

impl NotificationsApi {
    async fn get_prefs(&self, subject: PreferenceSubject) -> Result<PreferencesBody, ApiError> {
        Ok(preferences_body(
            self.state.store.preferences(&subject).await?,
        ))
    }

    async fn put_prefs(
        &self,
        subject: PreferenceSubject,
        body: PreferencesRequest,
    ) -> Result<PreferencesBody, ApiError> {
        let prefs = body.into_core(subject, SystemClock.now())?;
        self.state.store.put_preferences(&prefs).await?;
        Ok(preferences_body(Some(prefs)))
    }
}

#[OpenApi]
impl NotificationsApi {
    /// The caller's in-app notifications, newest first, with the unread count;
    /// `unread_only`, `limit` 1..=1000 (default 100) and `cursor`.
    #[oai(
        path = "/api/v1/analytics/notifications",
        method = "get",
        tag = "ApiTags::Notifications"
    )]
    async fn list(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// Only unread ones.
        unread_only: Query<Option<bool>>,
        /// Most notifications returned (1..=1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
        /// The `next_cursor` of the previous page (opaque).
        #[oai(validator(pattern = r"^-?[0-9]{1,18}\.[0-9a-f]{32}$"))]
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<InAppPage>> {
        let user = caller(req)?;
        let page = page_request(limit.0, cursor.0)?;
        let store = &self.state.store;
        let listed = store
            .list_in_app(&user, unread_only.0.unwrap_or(false), &page)
            .await?;
        Ok(Json(InAppPage {
            items: listed.items.into_iter().map(InAppBody::from).collect(),
            unread: store.unread_in_app(&user).await?,
            next_cursor: listed.next_cursor.map(|c| c.to_string()),
        }))
    }

    /// Marks one of the caller's notifications read (204; again: 204, the first read time
    /// is kept); another user's notification is 404.
    #[oai(
        path = "/api/v1/analytics/notifications/:id/read",
        method = "post",
        tag = "ApiTags::Notifications"
    )]
    async fn read(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The notification id.
        id: Path<Uuid>,
    ) -> ApiResult<Marked, NotFound> {
        let user = caller(req)?;
        let store = &self.state.store;
        if store.get_in_app(&user, id.0).await?.is_none() {
            return Err(analytics_core::Error::not_found(format!("notification {}", id.0)).into());
        }
        store
            .mark_in_app_read(&user, &[id.0], SystemClock.now())
            .await?;
        Ok(Marked::NoContent)
    }

    /// Marks all of the caller's notifications read (204).
    #[oai(
        path = "/api/v1/analytics/notifications/read-all",
        method = "post",
        tag = "ApiTags::Notifications"
    )]
    async fn read_all(&self, req: &Request, _auth: BearerAuth) -> ApiResult<Marked> {
        let user = caller(req)?;
        let store = &self.state.store;
        let now = SystemClock.now();
        // Unread ones a page at a time; each pass marks what it listed.
        loop {
            let unread = store
                .list_in_app(&user, true, &PageRequest::first(1000))
                .await?;
            let ids: Vec<Uuid> = unread.items.iter().map(|n| n.id).collect();
            if ids.is_empty() || store.mark_in_app_read(&user, &ids, now).await? == 0 {
                break;
            }
        }
        Ok(Marked::NoContent)
    }

    /// The caller's notification preferences (the defaults when none were set).
    #[oai(
        path = "/api/v1/analytics/notifications/preferences",
        method = "get",
        tag = "ApiTags::Notifications"
    )]
    async fn my_preferences(
        &self,
        req: &Request,
        _auth: BearerAuth,
    ) -> ApiResult<Json<PreferencesBody>> {
        let user = caller(req)?;
        Ok(Json(self.get_prefs(PreferenceSubject::User(user)).await?))
    }

    /// Replaces the caller's notification preferences.
    #[oai(
        path = "/api/v1/analytics/notifications/preferences",
        method = "put",
        tag = "ApiTags::Notifications"
    )]
    async fn put_my_preferences(
        &self,
        req: &Request,
        _auth: BearerAuth,
        body: StrictJson<PreferencesRequest>,
    ) -> ApiResult<Json<PreferencesBody>, Body> {
        let user = caller(req)?;
        Ok(Json(
            self.put_prefs(PreferenceSubject::User(user), body.0)
                .await?,
        ))
    }

    /// A user's notification preferences (role `admin`).
    #[oai(
        path = "/api/v1/analytics/notifications/preferences/users/:user",
        method = "get",
        tag = "ApiTags::Notifications"
    )]
    async fn user_preferences(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The user (JWT `sub`).
        #[oai(validator(
            max_length = 64,
            pattern = r"^[^\s/\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]*$"
        ))]
        user: Path<String>,
    ) -> ApiResult<Json<PreferencesBody>> {
        require_admin(req)?;
        Ok(Json(self.get_prefs(user_subject(user.0, "user")?).await?))
    }

    /// Replaces a user's notification preferences (role `admin`).
    #[oai(
        path = "/api/v1/analytics/notifications/preferences/users/:user",
        method = "put",
        tag = "ApiTags::Notifications"
    )]
    async fn put_user_preferences(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The user (JWT `sub`).
        #[oai(validator(
            max_length = 64,
            pattern = r"^[^\s/\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]*$"
        ))]
        user: Path<String>,
        body: StrictJson<PreferencesRequest>,
    ) -> ApiResult<Json<PreferencesBody>, Body> {
        require_admin(req)?;
        Ok(Json(
            self.put_prefs(user_subject(user.0, "user")?, body.0)
                .await?,
        ))
    }

    /// A team's notification preferences and members (role `admin`).
    #[oai(
        path = "/api/v1/analytics/notifications/preferences/teams/:team",
        method = "get",
        tag = "ApiTags::Notifications"
    )]
    async fn team_preferences(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The team name.
        #[oai(validator(
            max_length = 50,
            pattern = r"^[^\s/\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]*$"
        ))]
        team: Path<String>,
    ) -> ApiResult<Json<PreferencesBody>> {
        require_admin(req)?;
        Ok(Json(self.get_prefs(team_subject(team.0)?).await?))
    }

    /// Replaces a team's notification preferences and members (role `admin`).
    #[oai(
        path = "/api/v1/analytics/notifications/preferences/teams/:team",
        method = "put",
        tag = "ApiTags::Notifications"
    )]
    async fn put_team_preferences(
        &self,
        req: &Request,
        _auth: BearerAuth,
        /// The team name.
        #[oai(validator(
            max_length = 50,
            pattern = r"^[^\s/\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]*$"
        ))]
        team: Path<String>,
        body: StrictJson<PreferencesRequest>,
    ) -> ApiResult<Json<PreferencesBody>, Body> {
        require_admin(req)?;
        Ok(Json(self.put_prefs(team_subject(team.0)?, body.0).await?))
    }
}
