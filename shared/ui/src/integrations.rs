//! `/settings/integrations?workspace=`: a card per provider with its state in
//! words, the one action that fixes it, the account by name, last and next
//! sync, the last error and a 30-day sparkline of its headline KPI; the
//! settings dialog of each integration; the Resend key form; the toast after
//! an OAuth round trip (`connected=` / `oauth_error=`).

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use kpi_app::AppState;
use kpi_core::metric::Unit;
use kpi_core::page::PageRequest;
use kpi_core::ports::provider::ProviderDescriptor;
use kpi_core::ports::store::KpiQuery;
use kpi_core::provider::AuthMode;
use kpi_core::{Integration, IntegrationStatus, WorkspaceScope};
use minijinja::Value;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::chart;
use crate::describe::{self, Action, Badge, FREQUENCIES, When};
use crate::page::{Frame, PageError, Viewer, workspace_param};

const PATH: &str = "/settings/integrations";

/// Most integrations a page reads (a workspace has a handful).
const MAX_INTEGRATIONS: usize = 500;

/// Days the sparkline covers.
const SPARK_DAYS: i64 = 30;

#[derive(Deserialize)]
pub struct Params {
    workspace: Option<String>,
    /// Back from OAuth: the provider connected, and its integration.
    connected: Option<String>,
    integration: Option<String>,
    /// Back from OAuth without a connection: why, and which provider.
    oauth_error: Option<String>,
    provider: Option<String>,
}

#[derive(Serialize)]
struct Toast {
    /// `ok` or `bad`.
    tone: &'static str,
    text: String,
}

#[derive(Serialize)]
struct ProviderSection {
    id: String,
    name: &'static str,
    /// The provider's own mark (an inline SVG from its descriptor).
    mark: &'static str,
    oauth: bool,
    /// Where a new OAuth connection starts.
    connect_url: String,
    cards: Vec<Card>,
    /// Whether it can be connected in this deployment.
    available: bool,
    /// The headline KPI, in words.
    headline: String,
}

#[derive(Serialize)]
struct Choice {
    key: &'static str,
    label: &'static str,
    current: Option<String>,
    current_name: Option<String>,
}

#[derive(Serialize)]
struct Field {
    key: &'static str,
    label: &'static str,
    expected: &'static str,
    value: String,
    kind: &'static str,
}

#[derive(Serialize)]
struct Toggle {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

#[derive(Serialize)]
struct Frequency {
    minutes: u32,
    label: &'static str,
    selected: bool,
}

#[derive(Serialize)]
struct Card {
    /// `None`: the provider is not connected at all.
    id: Option<String>,
    provider: String,
    provider_name: &'static str,
    name: String,
    status: Option<&'static str>,
    badge: Badge,
    badge_label: &'static str,
    tone: &'static str,
    explanation: String,
    action: Action,
    action_label: String,
    /// The OAuth link of a connect or reconnect.
    action_url: Option<String>,
    account: Option<String>,
    last_sync: Option<When>,
    next_sync: Option<When>,
    last_success: Option<When>,
    last_error: Option<String>,
    last_error_at: Option<When>,
    notice: Option<String>,
    spark: Option<Value>,
    spark_summary: Option<String>,
    paused: bool,
    syncable: bool,
    /// Waiting for its first sync: the page polls its status.
    first_sync_pending: bool,
    choices: Vec<Choice>,
    fields: Vec<Field>,
    windows: Vec<Toggle>,
    frequencies: Vec<Frequency>,
    webhooks: Option<String>,
    /// The endpoint to add at the provider by hand, when the key could not
    /// register it (the card then asks for its signing secret).
    webhook_endpoint: Option<String>,
    expires: Option<When>,
}

#[derive(Serialize)]
struct Suppressed {
    /// Where `DELETE` lifts it; `None` for an unsubscribe, which only the
    /// address's owner can undo.
    url: Option<String>,
    address: String,
    reason: String,
    at: When,
}

#[derive(Serialize)]
struct Context {
    frame: Frame,
    toast: Option<Toast>,
    /// The integration whose settings open by themselves (after connecting).
    open: Option<String>,
    providers: Vec<ProviderSection>,
    recipients: Vec<String>,
    suppressions: Vec<Suppressed>,
    return_to: String,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<Params>,
) -> Result<Response, PageError> {
    let (ws, scope) = workspace_param(&viewer, params.workspace.as_deref(), PATH)?;
    let now = state.clock.now();
    let integrations = all_integrations(&state, &scope).await?;
    let return_to = format!("{PATH}?workspace={ws}");

    let mut providers = Vec::new();
    for entry in state.registry.entries() {
        let d = &entry.descriptor;
        let mine: Vec<&Integration> = integrations.iter().filter(|i| i.provider == d.id).collect();
        let live: Vec<&Integration> = mine
            .iter()
            .copied()
            .filter(|i| i.status() != IntegrationStatus::Disconnected)
            .collect();
        // A provider shows its live integrations, else the last one that was
        // disconnected, else an empty card to connect it.
        let shown: Vec<&Integration> = if live.is_empty() {
            mine.iter()
                .copied()
                .max_by_key(|i| i.updated_at)
                .into_iter()
                .collect()
        } else {
            live
        };
        let connect_url = oauth_start(d, &ws, None, &return_to);
        let mut cards = Vec::new();
        for i in shown {
            cards.push(card(&state, &scope, d, i, &ws, &return_to, now).await?);
        }
        if cards.is_empty() {
            cards.push(empty_card(d, &connect_url));
        }
        providers.push(ProviderSection {
            id: d.id.to_string(),
            name: d.display_name,
            mark: d.mark,
            oauth: d.auth == AuthMode::OAuth,
            connect_url,
            cards,
            available: entry.is_available(),
            headline: metric_words(d.headline_metric),
        });
    }

    let (toast, open) = toast(&state, &params, &integrations);
    let recipients = kpi_notify::NotificationSettings::load(&*state.store, &scope)
        .await?
        .recipients;
    let suppressions = state
        .store
        .list_suppressions(&scope)
        .await?
        .into_iter()
        .map(|s| {
            let (address, stream) = kpi_core::email::split_suppression_key(&s.address);
            Suppressed {
                url: stream.is_none().then(|| {
                    format!(
                        "/v1/workspaces/{ws}/suppressions/{}",
                        percent_encoding::utf8_percent_encode(
                            address,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    )
                }),
                address: address.to_owned(),
                reason: s.reason.clone(),
                at: When::of(s.at, now),
            }
        })
        .collect();
    let context = Context {
        frame: Frame::new(&viewer, "Integrations", "integrations", Some(&ws)),
        toast,
        open,
        providers,
        recipients,
        suppressions,
        return_to,
    };
    viewer.respond(&state, "integrations.html", context)
}

async fn all_integrations(
    state: &AppState,
    scope: &WorkspaceScope,
) -> Result<Vec<Integration>, PageError> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(100);
    loop {
        let result = state.store.list_integrations(scope, &page).await?;
        out.extend(result.items);
        match result.next {
            Some(next) if out.len() < MAX_INTEGRATIONS => page = PageRequest::after(100, next),
            _ => break,
        }
    }
    Ok(out)
}

/// The OAuth start link: a new connection, or a reconnect of `integration`.
fn oauth_start(
    d: &ProviderDescriptor,
    ws: &str,
    integration: Option<&str>,
    return_to: &str,
) -> String {
    let mut url = url::Url::parse("http://x/").expect("static URL");
    url.set_path(&format!("/v1/oauth/{}/start", d.id));
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("workspace", ws);
        if let Some(i) = integration {
            q.append_pair("integration", i);
        }
        q.append_pair("return_to", return_to);
    }
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

fn empty_card(d: &ProviderDescriptor, connect_url: &str) -> Card {
    let oauth = d.auth == AuthMode::OAuth;
    Card {
        id: None,
        provider: d.id.to_string(),
        provider_name: d.display_name,
        name: d.display_name.to_owned(),
        status: None,
        badge: Badge::NotConnected,
        badge_label: Badge::NotConnected.label(),
        tone: Badge::NotConnected.tone(),
        explanation: if oauth {
            format!(
                "Connect your {} account to sync its KPIs. You sign in at {} and choose what to share.",
                d.display_name, d.display_name
            )
        } else {
            format!(
                "Connect {} with an API key to send alerts and reports from your own domain and to count deliveries.",
                d.display_name
            )
        },
        action: Action::Connect,
        action_label: Action::Connect.label(d.display_name),
        action_url: oauth.then(|| connect_url.to_owned()),
        account: None,
        last_sync: None,
        next_sync: None,
        last_success: None,
        last_error: None,
        last_error_at: None,
        notice: None,
        spark: None,
        spark_summary: None,
        paused: false,
        syncable: false,
        first_sync_pending: false,
        choices: Vec::new(),
        fields: Vec::new(),
        windows: Vec::new(),
        frequencies: Vec::new(),
        webhooks: None,
        webhook_endpoint: None,
        expires: None,
    }
}

async fn card(
    state: &AppState,
    scope: &WorkspaceScope,
    d: &ProviderDescriptor,
    i: &Integration,
    ws: &str,
    return_to: &str,
    now: DateTime<Utc>,
) -> Result<Card, PageError> {
    let choice_setting = d.settings.iter().find(|s| s.from_options);
    let choice_label = choice_setting.map_or("account", |s| s.label).to_lowercase();
    let (badge, explanation, action) = describe::state_of(i, d.display_name, &choice_label, now);
    let oauth = d.auth == AuthMode::OAuth;
    let id = i.id.to_string();
    let action_url = match action {
        Action::Reconnect if oauth => Some(oauth_start(d, ws, Some(&id), return_to)),
        Action::Connect if oauth => Some(oauth_start(d, ws, None, return_to)),
        _ => None,
    };
    let status = i.status();
    let live = status != IntegrationStatus::Disconnected;
    let setting_str = |key: &str| {
        i.settings
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let account = choice_setting.and_then(|s| {
        i.choice_names
            .get(s.key)
            .cloned()
            .or_else(|| setting_str(s.key))
    });
    let account = match (account, setting_str("from_address")) {
        (Some(a), _) => Some(a),
        (None, Some(from)) => Some(from),
        (None, None) => None,
    };
    let (spark, spark_summary) = if live && i.last_success_at.is_some() {
        sparkline(state, scope, d, i, now).await?
    } else {
        (None, None)
    };
    let choices = d
        .settings
        .iter()
        .filter(|s| s.from_options)
        .map(|s| Choice {
            key: s.key,
            label: s.label,
            current: setting_str(s.key),
            current_name: i.choice_names.get(s.key).cloned(),
        })
        .collect();
    let fields = d
        .settings
        .iter()
        .filter(|s| !s.from_options && s.key != "attribution_windows")
        .map(|s| Field {
            key: s.key,
            label: s.label,
            expected: s.expected,
            value: setting_str(s.key).unwrap_or_default(),
            kind: if s.key.ends_with("address") || s.key == "reply_to" {
                "email"
            } else {
                "text"
            },
        })
        .collect();
    let windows = if d.setting("attribution_windows").is_some() {
        let chosen: Vec<String> = i
            .settings
            .get("attribution_windows")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        [
            ("1d_click", "1-day click"),
            ("7d_click", "7-day click"),
            ("28d_click", "28-day click"),
            ("1d_view", "1-day view"),
            ("1d_ev", "1-day engaged view"),
        ]
        .into_iter()
        .map(|(value, label)| Toggle {
            value,
            label,
            checked: chosen.iter().any(|c| c == value),
        })
        .collect()
    } else {
        Vec::new()
    };
    let frequencies = FREQUENCIES
        .iter()
        .map(|(minutes, label)| Frequency {
            minutes: *minutes,
            label,
            selected: *minutes == i.sync_interval_minutes,
        })
        .collect();
    let webhooks = i.webhooks.as_ref().map(|w| {
        if w.subscribed {
            format!(
                "{} tells us when its numbers change, so they sync within minutes.",
                d.display_name
            )
        } else {
            format!(
                "Change notifications from {} are off{}; KPIs still sync on schedule.",
                d.display_name,
                w.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        }
    });
    let notice = i.last_notice.as_ref().and_then(|n| {
        (!n.emailed).then(|| {
            format!(
                "The last notice about this integration could not be emailed: {}.",
                n.reason.as_deref().unwrap_or("no reason given")
            )
        })
    });
    Ok(Card {
        id: Some(id),
        provider: d.id.to_string(),
        provider_name: d.display_name,
        name: i.display_name.clone(),
        status: Some(status.as_str()),
        badge,
        badge_label: badge.label(),
        tone: badge.tone(),
        explanation,
        action,
        action_label: action.label(d.display_name),
        action_url,
        account,
        last_sync: When::maybe(i.last_sync_at, now),
        next_sync: match status {
            IntegrationStatus::Connected => When::maybe(i.next_sync_at, now),
            _ => None,
        },
        last_success: When::maybe(i.last_success_at, now),
        last_error: i.last_error.as_ref().map(|e| e.message.clone()),
        last_error_at: i.last_error.as_ref().map(|e| When::of(e.at, now)),
        notice,
        spark,
        spark_summary,
        paused: status == IntegrationStatus::Paused,
        syncable: matches!(
            status,
            IntegrationStatus::Connected | IntegrationStatus::Error
        ),
        first_sync_pending: status == IntegrationStatus::Connected && i.last_success_at.is_none(),
        choices,
        fields,
        windows,
        frequencies,
        webhook_endpoint: i
            .webhooks
            .as_ref()
            .filter(|w| !w.subscribed && w.resource.contains("/v1/webhooks/"))
            .map(|w| w.resource.clone()),
        webhooks,
        expires: When::maybe(i.credentials_expire_at, now),
    })
}

/// "ga4.total_users" → "Total users".
pub fn metric_words(metric: &str) -> String {
    let name = metric.split_once('.').map_or(metric, |(_, n)| n);
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The headline KPI of the last 30 days, a point a day (UTC days; each point
/// is dated in the provider's reporting zone already).
async fn sparkline(
    state: &AppState,
    scope: &WorkspaceScope,
    d: &ProviderDescriptor,
    i: &Integration,
    now: DateTime<Utc>,
) -> Result<(Option<Value>, Option<String>), PageError> {
    let Ok(spec) = state.registry.metric(d.headline_metric) else {
        return Ok((None, None));
    };
    let to = now.date_naive();
    let from = to - Duration::days(SPARK_DAYS - 1);
    let points = state
        .store
        .query_kpis(
            scope,
            &KpiQuery {
                metric: spec.metric,
                from,
                to,
                integration: Some(i.id),
            },
        )
        .await?;
    let days: Vec<NaiveDate> = (0..SPARK_DAYS).map(|n| from + Duration::days(n)).collect();
    let values: Vec<Option<Decimal>> = days
        .iter()
        .map(|day| points.iter().find(|p| p.date == *day).map(|p| p.value))
        .collect();
    let currency = points
        .iter()
        .find_map(|p| p.currency.as_ref().map(|c| c.as_str().to_owned()));
    let total: Decimal = points.iter().map(|p| p.value).sum();
    let words = metric_words(d.headline_metric);
    let amount = match (spec.unit, currency) {
        (Unit::Currency, Some(c)) => format!("{} {c}", total.round_dp(2)),
        _ => total.normalize().to_string(),
    };
    let summary = format!(
        "{words}, last 30 days: {amount} in all, {} days with numbers",
        points.len()
    );
    Ok((chart::sparkline(&values, &summary), Some(summary)))
}

/// The toast after OAuth, and the integration whose settings open by
/// themselves (a fresh connection that still needs its choice).
fn toast(
    state: &AppState,
    params: &Params,
    integrations: &[Integration],
) -> (Option<Toast>, Option<String>) {
    let name = |raw: Option<&str>| {
        raw.and_then(|p| state.registry.parse("provider", p).ok())
            .and_then(|p| state.registry.descriptor(p).ok())
            .map_or("the provider", |d| d.display_name)
    };
    if let Some(kind) = &params.oauth_error {
        let provider = name(params.provider.as_deref());
        return (
            Some(Toast {
                tone: "bad",
                text: describe::oauth_error(kind, provider),
            }),
            None,
        );
    }
    if let Some(provider) = &params.connected {
        let display = name(Some(provider));
        let connected = params
            .integration
            .as_deref()
            .and_then(|id| integrations.iter().find(|i| i.id.to_string() == id));
        let needs_choice =
            connected.is_some_and(|i| i.status() == IntegrationStatus::NeedsConfiguration);
        let text = if needs_choice {
            format!("{display} is connected. Choose what to sync next.")
        } else {
            format!("{display} is connected.")
        };
        return (
            Some(Toast { tone: "ok", text }),
            connected.filter(|_| needs_choice).map(|i| i.id.to_string()),
        );
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::metric_words;

    #[test]
    fn metric_names_in_words() {
        assert_eq!(metric_words("ga4.total_users"), "Total users");
        assert_eq!(metric_words("meta.spend"), "Spend");
        assert_eq!(metric_words("resend.delivered"), "Delivered");
    }
}
