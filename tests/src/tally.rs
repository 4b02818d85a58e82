//! A provider defined in the tests ("Tally": API-key auth, one metric, one
//! option-backed setting, signed webhooks naming boards), registered through
//! the registry's public API. Its syncs can be held open (`hold`) to act
//! while one is in flight.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::metric::{MetricSpec, Unit};
use kpi_core::ports::provider::{
    ConnectOutcome, ConnectRequest, OptionItem, ProviderAdapter, ProviderDescriptor,
    ProviderOptions, SettingSpec, Settings, SyncRequest, SyncResult, WebhookDelivery,
    WebhookEvents, WebhookSpec,
};
use kpi_core::provider::AuthMode;
use kpi_core::{Error, Integration, KpiPoint, Provider, Result};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

pub const TALLY: Provider = Provider::new("tally");
pub const COUNT: MetricSpec = MetricSpec::new("tally.count", Unit::Count);

pub const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: TALLY,
    display_name: "Tally",
    auth: AuthMode::ApiKey,
    scopes: &[],
    settings: &[SettingSpec {
        key: "board",
        label: "Board",
        expected: "a board id such as board-1",
        required: false,
        from_options: true,
        must_be_an_option: true,
    }],
    metrics: &[COUNT],
    headline_metric: "tally.count",
    lookback_days: 1,
    max_window_days: 10,
    history_months: 120,
    queue_url_variable: "KPI_QUEUE_URL_TALLY",
    // A delivery names boards; the integrations on them sync.
    webhook_resource: Some("board"),
    webhook: Some(WebhookSpec {
        path: "tally",
        challenge: false,
        per_connection: false,
        screen: screen_delivery,
    }),
    mark: r##"<svg class="logo" viewBox="0 0 32 32" width="32" height="32" aria-hidden="true" focusable="false"><circle cx="16" cy="16" r="12" fill="#6b7280"/></svg>"##,
};

/// What Tally signs its webhook deliveries with (`x-tally-signature`: the
/// hex HMAC-SHA256 of the raw body).
pub const WEBHOOK_SECRET: &[u8] = b"tally-webhook-signing-secret";

/// A delivery as Tally would sign it: (headers, body).
pub fn signed_delivery(id: &str, boards: &[&str]) -> (Vec<(String, String)>, Vec<u8>) {
    let body = serde_json::json!({ "id": id, "boards": boards })
        .to_string()
        .into_bytes();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, WEBHOOK_SECRET);
    let tag = ring::hmac::sign(&key, &body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    (vec![("x-tally-signature".to_owned(), hex)], body)
}

/// Tally's deliveries carry their signature: one without is refused before
/// any secret is needed.
fn screen_delivery(delivery: &WebhookDelivery<'_>) -> Result<()> {
    match delivery.header("x-tally-signature") {
        Some(sig) if !sig.is_empty() => Ok(()),
        _ => Err(Error::unauthenticated(
            "the webhook signature does not verify",
        )),
    }
}

#[derive(Deserialize)]
struct TallyDelivery {
    id: String,
    boards: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TallySettings {
    #[serde(default)]
    #[allow(dead_code)]
    board: Option<String>,
}

#[derive(Default)]
pub struct Tally {
    pub revoked: Mutex<Vec<String>>,
    pub sync_calls: Mutex<u32>,
    /// While set, syncs wait for `release` (after signalling `entered`).
    pub hold: AtomicBool,
    pub entered: tokio::sync::Notify,
    pub release: tokio::sync::Notify,
}

fn key(credentials: &ConnectionCredentials) -> Result<String> {
    match credentials {
        ConnectionCredentials::ApiKey { key, .. } => Ok(key.expose_secret().to_owned()),
        ConnectionCredentials::OAuth(_) => Err(Error::config("Tally uses API keys")),
    }
}

#[async_trait]
impl ProviderAdapter for Tally {
    fn descriptor(&self) -> &ProviderDescriptor {
        &DESCRIPTOR
    }

    async fn connect(&self, request: ConnectRequest<'_>) -> Result<ConnectOutcome> {
        let ConnectRequest::ApiKey { key } = request else {
            return Err(Error::validation("provider", "Tally uses API keys"));
        };
        if !key.expose_secret().starts_with("tly_") {
            return Err(Error::validation(
                "api_key",
                "Tally did not accept this key",
            ));
        }
        Ok(ConnectOutcome {
            credentials: ConnectionCredentials::ApiKey { key, webhook: None },
            settings: Settings::new(),
            needs_configuration: false,
            account: None,
        })
    }

    async fn options(
        &self,
        _: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<ProviderOptions> {
        key(credentials)?;
        Ok(ProviderOptions {
            setting: "board".into(),
            options: ["board-1", "board-2"]
                .into_iter()
                .map(|b| OptionItem {
                    selectable: true,
                    id: b.into(),
                    name: b.to_uppercase(),
                    group: None,
                    details: Default::default(),
                })
                .collect(),
            note: None,
        })
    }

    fn validate_settings(&self, settings: &Settings) -> Result<()> {
        kpi_providers::settings::parse::<TallySettings>(settings).map(|_| ())
    }

    async fn health(&self, _: &Integration, credentials: &ConnectionCredentials) -> Result<()> {
        key(credentials).map(|_| ())
    }

    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult> {
        key(request.credentials)?;
        *self.sync_calls.lock().unwrap() += 1;
        if self.hold.load(Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        let i = request.integration;
        let mut points = Vec::new();
        let mut day = request.window.from;
        while day <= request.window.to {
            let value = rust_decimal::Decimal::from(chrono::Datelike::day(&day));
            points.push(KpiPoint::new(
                i.workspace.clone(),
                i.id,
                COUNT,
                day,
                value,
                None,
            )?);
            day += chrono::Duration::days(1);
        }
        Ok(SyncResult {
            points,
            provider_calls: 1,
            ..SyncResult::default()
        })
    }

    fn read_webhook(&self, delivery: &WebhookDelivery<'_>) -> Result<WebhookEvents> {
        let refused = || Error::unauthenticated("the webhook signature does not verify");
        let hex = delivery.header("x-tally-signature").ok_or_else(refused)?;
        let tag: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<_>>()
            .ok_or_else(refused)?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, WEBHOOK_SECRET);
        ring::hmac::verify(&key, delivery.body, &tag).map_err(|_| refused())?;
        let d: TallyDelivery = serde_json::from_slice(delivery.body)
            .map_err(|_| Error::validation("body", "not a Tally delivery"))?;
        Ok(WebhookEvents {
            delivery: d.id,
            resources: d.boards,
            emails: Vec::new(),
        })
    }

    async fn disconnect(&self, credentials: &ConnectionCredentials) -> Result<()> {
        self.revoked.lock().unwrap().push(key(credentials)?);
        Ok(())
    }
}
