//! Tests of routing: default channels per severity, explicit channels, preferences, and
//! the idempotency keys.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;
use crate::alert::engine::NoticeKind;
use crate::alert::{Condition, NoDataPolicy, Severity, Stat};
use crate::ids::{MetricName, ProjectId, Threshold, UserId, WebhookUrl};
use crate::rollup::Dimensions;

fn user(id: &str) -> Recipient {
    Recipient::User(UserId::parse(id).unwrap())
}

fn email(a: &str) -> Recipient {
    Recipient::Email(a.parse().unwrap())
}

fn phone(n: &str) -> Recipient {
    Recipient::Phone(n.parse().unwrap())
}

fn webhook(url: &str) -> Recipient {
    Recipient::SlackWebhook(WebhookUrl::parse(url).unwrap())
}

fn spec(channels: Vec<Channel>, recipients: Vec<Recipient>) -> AlertConfigSpec {
    AlertConfigSpec {
        project: ProjectId::default_project(),
        name: "errors".into(),
        metric: MetricName::parse("api.error_rate").unwrap(),
        stat: Stat::Avg,
        dimensions: Dimensions::default(),
        condition: Condition::ThresholdAbove,
        threshold: Threshold::new(0.05).unwrap(),
        window_secs: 300,
        severity: Severity::Warning,
        cooldown_secs: 0,
        channels,
        recipients,
        enabled: true,
        for_secs: 0,
        recovery_threshold: None,
        auto_resolve: true,
        no_data: NoDataPolicy::Keep,
    }
}

fn notice(severity: Severity, kind: NoticeKind, seq: u32) -> Notice {
    Notice {
        config_id: stable_id("config"),
        alert_id: stable_id("alert"),
        kind,
        seq,
        severity,
        at: DateTime::<Utc>::UNIX_EPOCH,
        title: "[WARNING] firing: errors".into(),
        body: "avg of api.error_rate is 0.07".into(),
    }
}

fn prefs(subject: PreferenceSubject) -> NotificationPreferences {
    NotificationPreferences {
        subject,
        channels: vec![],
        email: None,
        phone: None,
        slack_webhook: None,
        mute_non_critical: false,
        quiet_hours: None,
        members: Vec::new(),
        updated_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

/// `(channel, recipient label)` of each routed notification.
fn check(
    severity: Severity,
    spec: &AlertConfigSpec,
    preferences: &[NotificationPreferences],
    expect: &[(Channel, &str)],
) {
    let got: Vec<(Channel, String)> =
        route(&notice(severity, NoticeKind::Fired, 0), spec, preferences)
            .into_iter()
            .map(|n| (n.channel, n.recipient.label()))
            .collect();
    let want: Vec<(Channel, String)> = expect.iter().map(|(c, l)| (*c, l.to_string())).collect();
    assert_eq!(
        got, want,
        "{severity:?} {:?} {:?}",
        spec.channels, spec.recipients
    );
}

fn everyone() -> Vec<Recipient> {
    vec![
        user("alice"),
        email("ops@example.com"),
        phone("+14155550100"),
    ]
}

#[test]
fn default_channels_follow_severity() {
    let s = spec(vec![], everyone());
    check(Severity::Info, &s, &[], &[(Channel::InApp, "user:alice")]);
    check(
        Severity::Warning,
        &s,
        &[],
        &[
            (Channel::InApp, "user:alice"),
            (Channel::Slack, "slack:default"),
            (Channel::Email, "ops@example.com"),
        ],
    );
    check(
        Severity::Critical,
        &s,
        &[],
        &[
            (Channel::InApp, "user:alice"),
            (Channel::Slack, "slack:default"),
            (Channel::Email, "ops@example.com"),
            (Channel::Sms, "+14155550100"),
        ],
    );
}

#[test]
fn explicit_channels_replace_the_defaults() {
    let s = spec(vec![Channel::Email], everyone());
    check(
        Severity::Critical,
        &s,
        &[],
        &[(Channel::Email, "ops@example.com")],
    );
    // Named webhooks replace the default one; each gets one message.
    let s = spec(
        vec![Channel::Slack],
        vec![
            webhook("https://hooks.slack.com/services/T0/B0/AAA"),
            webhook("https://hooks.slack.com/services/T0/B1/BBB"),
        ],
    );
    let routed = route(&notice(Severity::Info, NoticeKind::Fired, 0), &s, &[]);
    assert_eq!(routed.len(), 2);
    assert!(routed.iter().all(|n| n.channel == Channel::Slack));
    assert_ne!(routed[0].id, routed[1].id);
}

#[test]
fn preferences_decide_how_a_user_or_team_is_reached() {
    let alice = PreferenceSubject::User(UserId::parse("alice").unwrap());
    let mut p = prefs(alice);
    p.channels = vec![(Severity::Warning, vec![Channel::Email, Channel::Sms])];
    p.email = Some("alice@example.com".parse().unwrap());
    // No phone: SMS has no address for her and is skipped.
    let s = spec(vec![Channel::InApp], vec![user("alice")]);
    check(
        Severity::Warning,
        &s,
        std::slice::from_ref(&p),
        &[(Channel::Email, "alice@example.com")],
    );
    // Muted below critical.
    p.mute_non_critical = true;
    check(Severity::Warning, &s, std::slice::from_ref(&p), &[]);
    check(
        Severity::Critical,
        &s,
        std::slice::from_ref(&p),
        &[
            (Channel::InApp, "user:alice"),
            (Channel::Slack, "slack:default"),
            (Channel::Email, "alice@example.com"),
        ],
    );

    // A team is reached through its own preferences; without them only Slack's default.
    let mut team = prefs(PreferenceSubject::Team("payments".into()));
    team.channels = vec![(Severity::Warning, vec![Channel::Slack, Channel::InApp])];
    team.slack_webhook =
        Some(WebhookUrl::parse("https://hooks.slack.com/services/T9/B9/PAY").unwrap());
    let s = spec(vec![], vec![Recipient::Team("payments".into())]);
    check(
        Severity::Warning,
        &s,
        &[team],
        &[(Channel::Slack, "slack:hooks.slack.com")],
    );
    check(
        Severity::Warning,
        &s,
        &[],
        &[(Channel::Slack, "slack:default")],
    );
}

#[test]
fn idempotency_keys_are_stable_and_unique_per_transition_channel_and_recipient() {
    let s = spec(
        vec![],
        vec![
            user("alice"),
            user("bob"),
            email("ops@example.com"),
            phone("+14155550100"),
            webhook("https://hooks.slack.com/services/T0/B0/AAA"),
            webhook("https://hooks.slack.com/services/T0/B1/BBB"),
        ],
    );
    let transitions = [
        (NoticeKind::Fired, 0),
        (NoticeKind::Reminder, 1),
        (NoticeKind::Reminder, 2),
        (NoticeKind::Resolved, 3),
    ];
    let mut ids = HashSet::new();
    let mut total = 0;
    for (kind, seq) in transitions {
        let n = notice(Severity::Critical, kind, seq);
        let first: Vec<Uuid> = route(&n, &s, &[]).iter().map(|n| n.id).collect();
        let again: Vec<Uuid> = route(&n, &s, &[]).iter().map(|n| n.id).collect();
        assert_eq!(first, again, "stable for {kind:?} {seq}");
        // alice, bob (in-app), two webhooks, email, SMS.
        assert_eq!(first.len(), 6);
        total += first.len();
        ids.extend(first);
    }
    assert_eq!(ids.len(), total);
    // Another alert's notice never shares a key.
    let mut other = notice(Severity::Critical, NoticeKind::Fired, 0);
    other.alert_id = stable_id("another alert");
    assert!(route(&other, &s, &[]).iter().all(|n| !ids.contains(&n.id)));
    // The key is pinned: changing its derivation would re-send what the outbox holds.
    assert_eq!(
        notification_id(
            &notice(Severity::Info, NoticeKind::Fired, 0),
            Channel::InApp,
            &user("alice")
        ),
        stable_id(&format!(
            "notification/{}/fired/0/in_app/user:alice",
            stable_id("alert")
        ))
    );
}

#[test]
fn routed_notifications_carry_the_notice() {
    let s = spec(vec![Channel::InApp], vec![user("alice")]);
    let n = notice(Severity::Warning, NoticeKind::Reminder, 2);
    let routed = route(&n, &s, &[]);
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].alert_id, Some(n.alert_id));
    assert_eq!(routed[0].severity, Severity::Warning);
    assert_eq!(routed[0].title, n.title);
    assert_eq!(routed[0].body, n.body);
}

#[test]
fn quiet_hours_keep_a_team_in_app_unless_critical_and_members_get_it() {
    let mut sre = prefs(PreferenceSubject::Team("sre".into()));
    sre.members = vec![
        UserId::parse("alice").unwrap(),
        UserId::parse("bob").unwrap(),
    ];
    sre.email = Some("sre@example.com".parse().unwrap());
    // The notices are at 00:00 UTC, inside 23:00-01:00 UTC.
    sre.quiet_hours =
        Some(crate::notification::QuietHours::parse("23:00", "01:00", "UTC").unwrap());
    let s = spec(vec![], vec![Recipient::Team("sre".into())]);
    check(
        Severity::Warning,
        &s,
        std::slice::from_ref(&sre),
        &[
            (Channel::InApp, "user:alice"),
            (Channel::InApp, "user:bob"),
            (Channel::Slack, "slack:default"),
        ],
    );
    check(
        Severity::Critical,
        &s,
        std::slice::from_ref(&sre),
        &[
            (Channel::InApp, "user:alice"),
            (Channel::InApp, "user:bob"),
            (Channel::Slack, "slack:default"),
            (Channel::Email, "sre@example.com"),
        ],
    );
    // Outside quiet hours the team's email is used for a warning too.
    sre.quiet_hours =
        Some(crate::notification::QuietHours::parse("09:00", "17:00", "UTC").unwrap());
    check(
        Severity::Warning,
        &s,
        std::slice::from_ref(&sre),
        &[
            (Channel::InApp, "user:alice"),
            (Channel::InApp, "user:bob"),
            (Channel::Slack, "slack:default"),
            (Channel::Email, "sre@example.com"),
        ],
    );
}
