//! Every message rendered from fixed data and compared with the files in
//! `tests/golden/` (`UPDATE_GOLDEN=1` rewrites them after a deliberate
//! change). Each also passes a basic HTML check and has a plain-text part.

use kpi_notify::messages::{
    KpiAlert, KpiReport, Message, ReconnectReminder, Recovery, ReportRow, SyncFailure,
};

const UNSUBSCRIBE: &str = "https://kpi.example.com/v1/unsubscribe/u1.eyJ3IjoiZGVtbyJ9.c2ln";
const SETTINGS: &str = "https://kpi.example.com/settings/integrations?workspace=acme&integration=0193b5e2-7c1a-7000-8000-000000000001";

fn messages() -> Vec<(&'static str, Message)> {
    vec![
        (
            "sync_failure",
            Message::SyncFailure(SyncFailure {
                integration_name: "Shop <Analytics> & Co".into(),
                provider_name: "Google Analytics 4".into(),
                what_failed: "Google Analytics says this account has no access to property 123456."
                    .into(),
                what_to_do: "Check the integration's settings, then choose Sync now.".into(),
                failed_at: "28 November 2026, 09:15 UTC".into(),
                settings_url: SETTINGS.into(),
            }),
        ),
        (
            "recovery",
            Message::Recovery(Recovery {
                integration_name: "Shop Analytics".into(),
                provider_name: "Google Analytics 4".into(),
                failing_since: "28 November 2026, 09:15 UTC".into(),
                settings_url: SETTINGS.into(),
            }),
        ),
        (
            "reconnect_reminder",
            Message::ReconnectReminder(ReconnectReminder {
                integration_name: "Meta Ads".into(),
                provider_name: "Meta Ads".into(),
                reason: "The Meta Ads connection of Meta Ads expires on 3 December 2026.".into(),
                deadline: "3 December 2026".into(),
                settings_url: SETTINGS.into(),
            }),
        ),
        (
            "kpi_alert",
            Message::KpiAlert(KpiAlert {
                rule_name: "ROAS too low".into(),
                metric_label: "Meta ROAS".into(),
                integration_name: "Meta Ads".into(),
                comparison: "fell below".into(),
                threshold: "2.00".into(),
                value: "1.42".into(),
                date: "27 November 2026".into(),
                settings_url: SETTINGS.into(),
            }),
        ),
        (
            "kpi_back_to_normal",
            Message::KpiBackToNormal(KpiAlert {
                rule_name: "ROAS too low".into(),
                metric_label: "Meta ROAS".into(),
                integration_name: "Meta Ads".into(),
                comparison: "below".into(),
                threshold: "2.00".into(),
                value: "2.35".into(),
                date: "29 November 2026".into(),
                settings_url: SETTINGS.into(),
            }),
        ),
        (
            "kpi_report",
            Message::KpiReport(KpiReport {
                workspace: "acme".into(),
                period_label: "Week of 16 November 2026".into(),
                previous_label: "the week before".into(),
                rows: vec![
                    ReportRow {
                        metric_label: "Sessions".into(),
                        value: "12,480".into(),
                        change: "+12.5%".into(),
                        direction: "up".into(),
                        bar_percent: 100,
                    },
                    ReportRow {
                        metric_label: "Meta spend (EUR)".into(),
                        value: "1,234.56".into(),
                        change: "−3.0%".into(),
                        direction: "down".into(),
                        bar_percent: 42,
                    },
                    ReportRow {
                        metric_label: "Delivery rate".into(),
                        value: "98.2%".into(),
                        change: "—".into(),
                        direction: "flat".into(),
                        bar_percent: 0,
                    },
                ],
                notes: vec![
                    "Shop Analytics is not syncing (error): its numbers may be incomplete.".into(),
                ],
                settings_url: SETTINGS.into(),
            }),
        ),
    ]
}

/// Void elements of HTML, which have no closing tag.
const VOID: [&str; 6] = ["meta", "br", "img", "hr", "input", "link"];

/// A basic well-formedness check: a doctype, `lang`, a title, and every
/// non-void tag closed in order.
fn check_html(name: &str, html: &str) {
    assert!(html.starts_with("<!doctype html>"), "{name}: doctype");
    assert!(html.contains("<html lang=\"en\">"), "{name}: lang");
    assert!(
        html.contains("<title>") && html.contains("</title>"),
        "{name}: title"
    );
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "{name}: no script"
    );
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("a closed tag") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        let name_of = |t: &str| {
            t.trim_start_matches('/')
                .split(|c: char| c.is_whitespace() || c == '/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        };
        let tag_name = name_of(tag);
        if VOID.contains(&tag_name.as_str()) {
            continue;
        }
        if tag.starts_with('/') {
            assert_eq!(
                open.pop().as_deref(),
                Some(tag_name.as_str()),
                "{name}: </{tag_name}> closes another tag"
            );
        } else {
            open.push(tag_name);
        }
    }
    assert!(open.is_empty(), "{name}: unclosed {open:?}");
}

#[test]
fn every_message_matches_its_golden_files_and_is_well_formed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, message) in messages() {
        assert_eq!(message.kind(), name);
        let rendered = message.render_for(Some(UNSUBSCRIBE)).unwrap();
        check_html(name, &rendered.html);
        assert!(
            rendered.text.contains(UNSUBSCRIBE),
            "{name}: unsubscribe in the text part"
        );
        assert!(
            rendered.html.contains(&format!("href=\"{UNSUBSCRIBE}\"")),
            "{name}: unsubscribe in the HTML part"
        );
        let preview = message.render().unwrap();
        assert!(
            !preview.text.contains("Unsubscribe") && !preview.html.contains("Unsubscribe"),
            "{name}: an email the reader asked for has no list to leave"
        );
        assert!(
            rendered.text.contains(SETTINGS),
            "{name}: the link in the text part"
        );
        assert!(
            rendered
                .html
                .contains(&format!("href=\"{}\"", SETTINGS.replace('&', "&amp;"))),
            "{name}: the link in the HTML part"
        );
        assert!(
            !rendered.text.contains('<') || name == "sync_failure",
            "{name}: plain text"
        );
        let files = [
            ("subject.txt", rendered.subject.clone() + "\n"),
            ("html", rendered.html.clone()),
            ("txt", rendered.text.clone()),
        ];
        for (ext, got) in files {
            let path = dir.join(format!("{name}.{ext}"));
            if update {
                std::fs::write(&path, &got).unwrap();
            }
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
            assert_eq!(got, want, "{} differs", path.display());
        }
    }
}

#[test]
fn values_are_escaped_in_html_and_kept_in_text() {
    let (_, message) = messages().remove(0);
    let r = message.render().unwrap();
    assert!(r.html.contains("Shop &lt;Analytics&gt; &amp; Co"));
    assert!(!r.html.contains("Shop <Analytics>"));
    assert!(r.text.contains("Shop <Analytics> & Co"));
    assert_eq!(r.subject, "Shop <Analytics> & Co stopped syncing");
}

#[test]
fn platform_subjects_hold_no_text_a_workspace_wrote() {
    for (name, message) in messages() {
        let subject = message.render_as(None, true).unwrap().subject;
        for written in ["Shop", "ROAS too low", "acme"] {
            assert!(!subject.contains(written), "{name}: {subject}");
        }
        // The workspace's own account keeps its names.
        assert!(!message.render().unwrap().subject.is_empty());
    }
}

#[test]
fn the_confirmation_asks_once_and_promises_nothing_more() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let url = "https://kpi.example.com/v1/confirm/c1.eyJ3IjoiZGVtbyJ9.c2ln";
    let message = kpi_notify::Message::ConfirmAddress(kpi_notify::messages::ConfirmAddress {
        confirm_url: url.into(),
    });
    assert_eq!(message.stream(), None, "no list to leave");
    let rendered = message.render_as(None, true).unwrap();
    check_html("confirm_address", &rendered.html);
    assert!(rendered.html.contains(&format!("href=\"{url}\"")));
    assert!(rendered.text.contains(url));
    assert!(rendered.text.contains("nothing more is sent"));
    for (ext, got) in [
        ("subject.txt", rendered.subject.clone() + "\n"),
        ("html", rendered.html.clone()),
        ("txt", rendered.text.clone()),
    ] {
        let path = dir.join(format!("confirm_address.{ext}"));
        if update {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(got, want, "{} differs", path.display());
    }
}
