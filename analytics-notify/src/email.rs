//! `SmtpEmailNotifier`: one email through SMTP with lettre (rustls): STARTTLS when offered
//! (`smtp://`), STARTTLS required (`smtp+starttls://`) or implicit TLS (`smtps://`), with a
//! text and an HTML body holding the alert's text (value, threshold, time) and a link. The
//! notification id is the `Message-ID`, so a repeated delivery is recognisable.

use std::time::Duration;

use analytics_core::notification::{Channel, Delivered, Notification, NotifyError, Recipient};
use analytics_core::ports::Notifier;
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use url::Url;

use crate::secret::Secret;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// STARTTLS when the server offers it, plain otherwise (`smtp://`).
    Opportunistic,
    /// STARTTLS or fail (`smtp+starttls://`).
    StartTlsRequired,
    /// TLS from the first byte (`smtps://`).
    Implicit,
}

/// SMTP settings, parsed from `ANALYTICS_SMTP_URL` and `ANALYTICS_SMTP_FROM`.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS mode.
    pub security: SmtpSecurity,
    /// User and password, when the URL has them.
    pub credentials: Option<(String, Secret)>,
    /// The sender.
    pub from: Mailbox,
    /// Base URL of the admin UI; the link is `{base}/alerts/{alert_id}` when the
    /// notification carries none.
    pub link_base: Option<String>,
}

impl SmtpSettings {
    /// Parses `smtp://[user:password@]host[:port]` (also `smtp+starttls://`, `smtps://`)
    /// and the sender address. Errors name what is wrong, never the password.
    pub fn parse(url: &str, from: &str) -> Result<Self, String> {
        let u = Url::parse(url).map_err(|_| "ANALYTICS_SMTP_URL is not a URL".to_owned())?;
        let (security, default_port) = match u.scheme() {
            "smtp" => (SmtpSecurity::Opportunistic, 587),
            "smtp+starttls" => (SmtpSecurity::StartTlsRequired, 587),
            "smtps" => (SmtpSecurity::Implicit, 465),
            _ => {
                return Err(
                    "ANALYTICS_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://"
                        .into(),
                );
            }
        };
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("ANALYTICS_SMTP_URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let credentials = (!u.username().is_empty()).then(|| {
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (
                decode(u.username()),
                Secret::new(decode(u.password().unwrap_or(""))),
            )
        });
        let from: Mailbox = from
            .parse()
            .map_err(|_| "ANALYTICS_SMTP_FROM is not an email address".to_owned())?;
        Ok(Self {
            host,
            port: u.port().unwrap_or(default_port),
            security,
            credentials,
            from,
            link_base: None,
        })
    }
}

/// Email through SMTP.
pub struct SmtpEmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    settings: SmtpSettings,
}

impl std::fmt::Debug for SmtpEmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpEmailNotifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SmtpEmailNotifier {
    /// A notifier with a pooled connection; every SMTP command gives up after `timeout`.
    /// Must be called (and the notifier dropped) inside a Tokio runtime.
    pub fn new(settings: SmtpSettings, timeout: Duration) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = || {
            TlsParameters::new(settings.host.clone()).map_err(|e| format!("smtp tls settings: {e}"))
        };
        let tls = match settings.security {
            SmtpSecurity::Opportunistic => Tls::Opportunistic(tls()?),
            SmtpSecurity::StartTlsRequired => Tls::Required(tls()?),
            SmtpSecurity::Implicit => Tls::Wrapper(tls()?),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
                .port(settings.port)
                .tls(tls)
                .timeout(Some(timeout));
        if let Some((user, password)) = &settings.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            transport: builder.build(),
            settings,
        })
    }

    fn link(&self, n: &Notification) -> Option<String> {
        n.link.clone().or_else(|| {
            let base = self.settings.link_base.as_deref()?;
            let id = n.alert_id?;
            Some(format!("{}/alerts/{id}", base.trim_end_matches('/')))
        })
    }

    /// The message for one notification.
    pub fn message(&self, n: &Notification) -> Result<Message, NotifyError> {
        let Recipient::Email(to) = &n.recipient else {
            return Err(NotifyError::Permanent(format!(
                "email cannot reach recipient {}",
                n.recipient.label()
            )));
        };
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|_| NotifyError::Permanent("invalid recipient address".into()))?;
        let link = self.link(n);
        let mut text = format!("{}\n\n{}\n", n.title, n.body);
        let mut html = format!(
            "<html><body><h2>{}</h2><p>{}</p>",
            escape(&n.title),
            escape(&n.body)
        );
        if let Some(link) = &link {
            text.push_str(&format!("\nOpen the alert: {link}\n"));
            html.push_str(&format!(
                "<p><a href=\"{}\">Open the alert</a></p>",
                escape(link)
            ));
        }
        html.push_str("</body></html>");
        let domain = self.settings.from.email.domain().to_owned();
        Message::builder()
            .from(self.settings.from.clone())
            .to(to)
            .subject(n.title.replace(['\r', '\n'], " "))
            .message_id(Some(format!("<{}@{domain}>", n.id)))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| NotifyError::Permanent(format!("cannot build the message: {e}")))
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[async_trait]
impl Notifier for SmtpEmailNotifier {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, NotifyError> {
        let message = self.message(n)?;
        match self.transport.send(message).await {
            Ok(response) => Ok(Delivered {
                provider_id: response.message().next().map(str::to_owned),
            }),
            Err(e) if e.is_permanent() => Err(NotifyError::Permanent(format!("smtp: {e}"))),
            Err(e) if e.is_timeout() => Err(NotifyError::Transient(format!("smtp timed out: {e}"))),
            Err(e) => Err(NotifyError::Transient(format!("smtp: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_tls_mode_and_keep_the_password_secret() {
        let s = SmtpSettings::parse(
            "smtps://ops%40x.com:p%40ss@mail.example.com",
            "Alerts <alerts@example.com>",
        )
        .unwrap();
        assert_eq!(s.security, SmtpSecurity::Implicit);
        assert_eq!(s.port, 465);
        let (user, pass) = s.credentials.clone().unwrap();
        assert_eq!(user, "ops@x.com");
        assert_eq!(pass.expose(), "p@ss");
        assert!(!format!("{s:?}").contains("p@ss"));
        let s = SmtpSettings::parse("smtp+starttls://mail:2525", "a@example.com").unwrap();
        assert_eq!((s.security, s.port), (SmtpSecurity::StartTlsRequired, 2525));
        let s = SmtpSettings::parse("smtp://mail", "a@example.com").unwrap();
        assert_eq!((s.security, s.port), (SmtpSecurity::Opportunistic, 587));
        assert!(SmtpSettings::parse("http://mail", "a@example.com").is_err());
        assert!(SmtpSettings::parse("smtp://mail", "not an address").is_err());
    }
}
