//! The messages the system sends, as typed data rendered through the
//! templates in `templates/` (HTML auto-escaped, with a plain-text part).

use std::sync::OnceLock;

use kpi_core::email::MailStream;
use kpi_core::{Error, Result};
use minijinja::{AutoEscape, Environment};
use serde::Serialize;

const CONFIRM_SUBJECT: &str = "Confirm that you want KPI Integrations notices";

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncFailure {
    pub integration_name: String,
    pub provider_name: String,
    /// What failed, in words a user understands.
    pub what_failed: String,
    pub what_to_do: String,
    pub failed_at: String,
    pub settings_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub integration_name: String,
    pub provider_name: String,
    pub failing_since: String,
    pub settings_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconnectReminder {
    pub integration_name: String,
    pub provider_name: String,
    /// Why: the connection expires on a date, or the grant was revoked.
    pub reason: String,
    /// When to reconnect by, as shown in the subject.
    pub deadline: String,
    pub settings_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct KpiAlert {
    pub rule_name: String,
    pub metric_label: String,
    pub integration_name: String,
    /// `rose above`, `fell below`, …
    pub comparison: String,
    pub threshold: String,
    pub value: String,
    pub date: String,
    pub settings_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    pub metric_label: String,
    pub value: String,
    /// `+12.5%`, `−3.0%`, `new`, `—`.
    pub change: String,
    /// `up`, `down` or `flat`: the change's colour.
    pub direction: String,
    /// Width of the row's bar, 0–100 (its value against the table's largest
    /// of the same unit).
    pub bar_percent: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct KpiReport {
    pub workspace: String,
    pub period_label: String,
    pub previous_label: String,
    pub rows: Vec<ReportRow>,
    /// Integrations whose numbers may be incomplete, said plainly.
    pub notes: Vec<String>,
    pub settings_url: String,
}

/// The double-opt-in email: an address a workspace listed, asked whether it
/// wants the platform's notices about that workspace.
#[derive(Debug, Clone, Serialize)]
pub struct ConfirmAddress {
    pub confirm_url: String,
}

/// Every message, by kind.
#[derive(Debug, Clone)]
pub enum Message {
    SyncFailure(SyncFailure),
    Recovery(Recovery),
    ReconnectReminder(ReconnectReminder),
    KpiAlert(KpiAlert),
    /// An alert's condition cleared (the same data as the alert).
    KpiBackToNormal(KpiAlert),
    KpiReport(KpiReport),
    ConfirmAddress(ConfirmAddress),
}

impl Message {
    /// The kind recorded with each send (`sync_failure`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SyncFailure(_) => "sync_failure",
            Self::Recovery(_) => "recovery",
            Self::ReconnectReminder(_) => "reconnect_reminder",
            Self::KpiAlert(_) => "kpi_alert",
            Self::KpiBackToNormal(_) => "kpi_back_to_normal",
            Self::KpiReport(_) => "kpi_report",
            Self::ConfirmAddress(_) => "confirm_address",
        }
    }

    /// The kind of email a reader can unsubscribe from that this one is;
    /// `None` for the confirmation, which goes once and to one address.
    pub fn stream(&self) -> Option<MailStream> {
        Some(match self {
            Self::SyncFailure(_) | Self::Recovery(_) | Self::ReconnectReminder(_) => {
                MailStream::Notices
            }
            Self::KpiAlert(_) | Self::KpiBackToNormal(_) => MailStream::Alerts,
            Self::KpiReport(_) => MailStream::Reports,
            Self::ConfirmAddress(_) => return None,
        })
    }

    /// The subject when the platform's own account sends: only words of
    /// ours, never text a workspace wrote (a display name or rule name could
    /// otherwise carry a phishing line under the platform's good name).
    fn platform_subject(&self) -> String {
        match self {
            Self::SyncFailure(m) => format!("A {} integration stopped syncing", m.provider_name),
            Self::Recovery(m) => format!("A {} integration is syncing again", m.provider_name),
            Self::ReconnectReminder(m) => {
                format!(
                    "A {} connection needs renewing by {}",
                    m.provider_name, m.deadline
                )
            }
            Self::KpiAlert(_) => "A KPI alert fired".into(),
            Self::KpiBackToNormal(_) => "A KPI alert is back to normal".into(),
            Self::KpiReport(m) => format!("{} — KPI report", m.period_label),
            Self::ConfirmAddress(_) => CONFIRM_SUBJECT.into(),
        }
    }

    fn subject(&self) -> String {
        match self {
            Self::SyncFailure(m) => format!("{} stopped syncing", m.integration_name),
            Self::Recovery(m) => format!("{} is syncing again", m.integration_name),
            Self::ReconnectReminder(m) => {
                format!("Reconnect {} by {}", m.integration_name, m.deadline)
            }
            Self::KpiAlert(m) => format!(
                "{}: {} {} {}",
                m.rule_name, m.metric_label, m.comparison, m.threshold
            ),
            Self::KpiBackToNormal(m) => format!("{}: back to normal", m.rule_name),
            Self::KpiReport(m) => format!("{} — KPI report", m.period_label),
            Self::ConfirmAddress(_) => CONFIRM_SUBJECT.into(),
        }
    }

    fn context(&self, subject: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
        let data = match self {
            Self::SyncFailure(m) => serde_json::to_value(m),
            Self::Recovery(m) => serde_json::to_value(m),
            Self::ReconnectReminder(m) => serde_json::to_value(m),
            Self::KpiAlert(m) | Self::KpiBackToNormal(m) => serde_json::to_value(m),
            Self::KpiReport(m) => serde_json::to_value(m),
            Self::ConfirmAddress(m) => serde_json::to_value(m),
        }
        .map_err(|e| Error::internal("a message's data did not serialize").with_source(e))?;
        let mut map = match data {
            serde_json::Value::Object(map) => map,
            _ => return Err(Error::internal("a message's data is not an object")),
        };
        map.insert("subject".into(), subject.into());
        map.insert("kind".into(), self.kind().into());
        Ok(map)
    }

    /// Subject, HTML and plain text, as sent to the one who asked for it (a
    /// preview): no unsubscribe link.
    pub fn render(&self) -> Result<Rendered> {
        self.render_for(None)
    }

    /// Subject, HTML and plain text for one reader of a list: with
    /// `unsubscribe_url`, both parts end by saying why the reader gets it and
    /// how to stop this kind of email with one click.
    pub fn render_for(&self, unsubscribe_url: Option<&str>) -> Result<Rendered> {
        self.render_as(unsubscribe_url, false)
    }

    /// [`Message::render_for`], sent from the platform's account when
    /// `platform` (its subject then holds no workspace-written text).
    pub fn render_as(&self, unsubscribe_url: Option<&str>, platform: bool) -> Result<Rendered> {
        let env = environment();
        let subject = if platform {
            self.platform_subject()
        } else {
            self.subject()
        };
        let mut context = self.context(&subject)?;
        if let (Some(url), Some(stream)) = (unsubscribe_url, self.stream()) {
            context.insert("unsubscribe_url".into(), url.into());
            context.insert("stream".into(), stream.described().into());
        }
        let render = |name: String| {
            env.get_template(&name)
                .and_then(|t| t.render(minijinja::value::Serde(&context)))
                .map_err(|e| Error::internal(format!("template {name} failed: {e}")))
        };
        let mut text = render(format!("{}.txt", self.kind()))?;
        text.push_str(&render("footer.txt".into())?);
        Ok(Rendered {
            html: render(format!("{}.html", self.kind()))?,
            text,
            subject,
        })
    }
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

/// The templates, compiled once per process.
pub(crate) fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.add_filter("href", href);
        for (name, source) in templates![
            "base.html",
            "footer.txt",
            "unsubscribe_page.html",
            "sync_failure.html",
            "sync_failure.txt",
            "recovery.html",
            "recovery.txt",
            "reconnect_reminder.html",
            "reconnect_reminder.txt",
            "kpi_alert.html",
            "kpi_alert.txt",
            "kpi_back_to_normal.html",
            "kpi_back_to_normal.txt",
            "kpi_report.html",
            "kpi_report.txt",
            "confirm_address.html",
            "confirm_address.txt",
        ] {
            // The templates ship inside the binary; a syntax error is a bug
            // the golden tests catch, so it surfaces at render time instead.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "email template does not compile");
            }
        }
        env
    })
}

/// A link for an `href` attribute: only http(s) URLs (others become `#`),
/// escaped for an attribute without turning `/` into entities as the
/// general HTML escape does.
fn href(url: String) -> minijinja::Value {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return minijinja::Value::from_safe_string("#".into());
    }
    minijinja::Value::from_safe_string(
        url.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
    )
}
