//! Routing: a pure function from an engine notice, the configuration's channels and
//! recipients, and the recipients' preferences to the outbox entries, one per (alert,
//! transition, channel, recipient), each with a stable idempotency key.

use std::collections::BTreeSet;

use crate::alert::AlertConfigSpec;
use crate::alert::engine::{Notice, stable_id};
use crate::notification::{
    Channel, Notification, NotificationPreferences, PreferenceSubject, Recipient,
};

/// The notifications for `notice`, ordered by (channel, recipient), without duplicates.
///
/// - The channels are the configuration's, or the severity's defaults when it lists none
///   (info: in-app; warning: in-app, Slack, email; critical: all of them and SMS).
/// - An address recipient (email, phone, Slack webhook) is used when its channel is among
///   them.
/// - A user or team with preferences is reached on the channels its preferences give for
///   the severity (muting included), whatever the configuration lists, at the addresses its
///   preferences hold (in-app for a user; email; phone; its Slack webhook or the default).
///   During the subject's quiet hours a non-critical alert reaches it in-app only; a team's
///   members each get the team's in-app notification.
///   Without preferences a user gets in-app when in-app is among the channels; a team has no
///   address of its own and gets nothing beyond the Slack message.
/// - Slack gets one message per transition: to every named webhook, or to the default
///   webhook when Slack is among the channels and no recipient named one.
pub fn route(
    notice: &Notice,
    spec: &AlertConfigSpec,
    preferences: &[NotificationPreferences],
) -> Vec<Notification> {
    let severity = notice.severity;
    let channels: Vec<Channel> = if spec.channels.is_empty() {
        Channel::defaults_for(severity).to_vec()
    } else {
        spec.channels.clone()
    };
    let mut targets: BTreeSet<(Channel, Recipient)> = BTreeSet::new();
    for recipient in &spec.recipients {
        let subject = match recipient {
            Recipient::User(u) => Some(PreferenceSubject::User(u.clone())),
            Recipient::Team(t) => Some(PreferenceSubject::Team(t.clone())),
            _ => None,
        };
        match subject {
            Some(subject) => match preferences.iter().find(|p| p.subject == subject) {
                Some(prefs) => {
                    let wanted = prefs.channels_at(severity, notice.at);
                    for &channel in &wanted {
                        if let Some(to) = address(recipient, prefs, channel) {
                            targets.insert((channel, to));
                        }
                    }
                    // A team's members see its alerts in-app.
                    if wanted.contains(&Channel::InApp) {
                        for member in &prefs.members {
                            targets.insert((Channel::InApp, Recipient::User(member.clone())));
                        }
                    }
                }
                None => {
                    if matches!(recipient, Recipient::User(_)) && channels.contains(&Channel::InApp)
                    {
                        targets.insert((Channel::InApp, recipient.clone()));
                    }
                }
            },
            None => {
                if let Some(channel) = recipient.channel().filter(|c| channels.contains(c)) {
                    targets.insert((channel, recipient.clone()));
                }
            }
        }
    }
    if channels.contains(&Channel::Slack) && !targets.iter().any(|(c, _)| *c == Channel::Slack) {
        targets.insert((Channel::Slack, Recipient::SlackDefault));
    }
    targets
        .into_iter()
        .map(|(channel, recipient)| Notification {
            id: notification_id(notice, channel, &recipient),
            alert_id: Some(notice.alert_id),
            severity,
            title: notice.title.clone(),
            body: notice.body.clone(),
            link: None,
            channel,
            recipient,
        })
        .collect()
}

/// The idempotency key of one delivery: a UUID derived from the alert, the transition (kind
/// and sequence number), the channel and the recipient. The recipient part is its label,
/// except that a Slack webhook uses its whole URL (every webhook shares one host, so the
/// label would collide); only the hash of it is kept.
pub fn notification_id(notice: &Notice, channel: Channel, recipient: &Recipient) -> uuid::Uuid {
    let who = match recipient {
        Recipient::SlackWebhook(url) => format!("slack:{}", url.as_str()),
        other => other.label(),
    };
    stable_id(&format!(
        "notification/{}/{}/{}/{}/{who}",
        notice.alert_id,
        notice.kind.as_str(),
        notice.seq,
        channel.as_str()
    ))
}

/// Where a user or team with these preferences is reached on `channel`, if anywhere.
fn address(
    recipient: &Recipient,
    prefs: &NotificationPreferences,
    channel: Channel,
) -> Option<Recipient> {
    match channel {
        Channel::InApp => matches!(recipient, Recipient::User(_)).then(|| recipient.clone()),
        Channel::Email => prefs.email.clone().map(Recipient::Email),
        Channel::Sms => prefs.phone.clone().map(Recipient::Phone),
        Channel::Slack => Some(
            prefs
                .slack_webhook
                .clone()
                .map_or(Recipient::SlackDefault, Recipient::SlackWebhook),
        ),
    }
}

#[cfg(test)]
mod tests;
