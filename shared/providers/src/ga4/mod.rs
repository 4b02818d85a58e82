//! Google Analytics 4: the provider plug-in. Its descriptor, how it is built
//! from configuration (Google's app or the sandbox), and the adapter: Google
//! OAuth connect, the property picker, typed settings, and the daily KPI
//! metrics of one property from one `batchRunReports` call per window (paged by
//! offset only when a window has more rows than a page), with token refresh,
//! quota awareness and a cap on concurrent requests per property.

pub mod api;
pub mod google;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use kpi_core::config::ConfigError;
use kpi_core::credentials::{ConnectionCredentials, OAuthTokens};
use kpi_core::kpi::Currency;
use kpi_core::metric::{MetricSpec, Unit};
use kpi_core::ports::provider::{
    Authorization, AuthorizationRequest, ConnectOutcome, ConnectRequest, OptionItem,
    ProviderAdapter, ProviderDescriptor, ProviderOptions, SettingSpec, Settings, SyncRequest,
    SyncResult,
};
use kpi_core::provider::AuthMode;
use kpi_core::registry::Plugin;
use kpi_core::{Error, Integration, KpiPoint, Provider, Result};
use rust_decimal::Decimal;
use serde::Deserialize;
use tokio::sync::Semaphore;

pub use api::{AdminApi, DataApi, PropertyOption, parse_date, parse_value};
use api::{DateRangeJson, Named, PAGE_LIMIT, Report, ReportRequest};
pub use google::GoogleOAuth;

use crate::plugin::BuildContext;
use crate::settings;

/// The KPI metrics, in the order of [`API_METRICS`].
pub const METRICS: [MetricSpec; 10] = [
    MetricSpec::new("ga4.sessions", Unit::Count),
    MetricSpec::new("ga4.total_users", Unit::Count),
    MetricSpec::new("ga4.new_users", Unit::Count),
    MetricSpec::new("ga4.active_users", Unit::Count),
    MetricSpec::new("ga4.screen_page_views", Unit::Count),
    // Rates and averages per session: over a range, weighted by sessions.
    MetricSpec::weighted("ga4.engagement_rate", Unit::Ratio, "ga4.sessions"),
    MetricSpec::weighted("ga4.bounce_rate", Unit::Ratio, "ga4.sessions"),
    MetricSpec::weighted(
        "ga4.avg_session_duration_seconds",
        Unit::Seconds,
        "ga4.sessions",
    ),
    MetricSpec::new("ga4.key_events", Unit::Count),
    MetricSpec::new("ga4.total_revenue", Unit::Currency),
];

/// The GA4 API metric behind each KPI metric (`keyEvents`, not `conversions`).
pub const API_METRICS: [&str; 10] = [
    "sessions",
    "totalUsers",
    "newUsers",
    "activeUsers",
    "screenPageViews",
    "engagementRate",
    "bounceRate",
    "averageSessionDuration",
    "keyEvents",
    "totalRevenue",
];

/// This provider's id in routes, records and configuration.
pub const ID: Provider = Provider::new("ga4");

pub const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ID,
    display_name: "Google Analytics 4",
    auth: AuthMode::OAuth,
    scopes: &[google::OPENID, google::ANALYTICS_READONLY],
    settings: &[SettingSpec {
        key: "property",
        label: "GA4 property",
        expected: "a GA4 property such as properties/123456789",
        required: true,
        from_options: true,
        must_be_an_option: true,
    }],
    metrics: &METRICS,
    headline_metric: "ga4.sessions",
    lookback_days: 3,
    // 10,000 rows per page: a year of days is still one call.
    max_window_days: 366,
    // GA4's data-retention setting (2 or 14 months, more for 360) limits
    // explorations, which read event-level data; the Data API's reports read
    // the aggregated tables, kept for the property's whole life. Ten years
    // reach back before GA4 existed (2020), so no property's history is cut.
    history_months: 120,
    queue_url_variable: "KPI_QUEUE_URL_GA4",
    webhook_resource: None,
    webhook: None,
    // A bar chart of our own drawing (no trademarked artwork).
    mark: r##"<svg class="logo" viewBox="0 0 32 32" width="32" height="32" aria-hidden="true" focusable="false"><rect x="21" y="4" width="7" height="24" rx="3.5" fill="#f59e0b"/><rect x="12.5" y="12" width="7" height="16" rx="3.5" fill="#d97706"/><circle cx="7.5" cy="24.5" r="3.5" fill="#b45309"/></svg>"##,
};

/// Concurrent GA4 Data API requests per property and process (Google allows 10
/// per property in all; this leaves room for several workers).
pub const CONCURRENT_PER_PROPERTY: usize = 3;

/// Builds the GA4 plug-in from configuration: Google's app, or the sandbox.
pub fn plugin(ctx: &BuildContext<'_>) -> Result<Plugin, ConfigError> {
    let own = ctx.vars.get("GOOGLE_CLIENT_ID").is_some()
        && ctx.vars.get("GOOGLE_CLIENT_SECRET").is_some();
    let source = ctx.source(own);
    let auth_url = source.url(
        "GOOGLE_AUTH_URL",
        "https://accounts.google.com/o/oauth2/v2/auth",
        "google/auth",
    )?;
    let token_url = source.url(
        "GOOGLE_TOKEN_URL",
        "https://oauth2.googleapis.com/token",
        "google/token",
    )?;
    let revoke_url = source.url(
        "GOOGLE_REVOKE_URL",
        "https://oauth2.googleapis.com/revoke",
        "google/revoke",
    )?;
    let admin_url = source.url(
        "GA4_ADMIN_API_URL",
        "https://analyticsadmin.googleapis.com/v1beta",
        "ga4/admin/v1beta",
    )?;
    let data_url = source.url(
        "GA4_DATA_API_URL",
        "https://analyticsdata.googleapis.com/v1beta",
        "ga4/data/v1beta",
    )?;
    let (Some(client_id), Some(secret)) = (
        source.vars.get("GOOGLE_CLIENT_ID"),
        source.vars.secret("GOOGLE_CLIENT_SECRET"),
    ) else {
        return Ok(Plugin::Unconfigured {
            descriptor: &DESCRIPTOR,
            why: "GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are not set".into(),
        });
    };
    let google = GoogleOAuth::new(
        ctx.http.clone(),
        client_id,
        secret,
        auth_url,
        token_url,
        revoke_url,
    );
    let adapter = Ga4Adapter::new(
        google,
        AdminApi {
            http: ctx.http.clone(),
            base: admin_url,
        },
        DataApi {
            http: ctx.http.clone(),
            base: data_url,
        },
        CONCURRENT_PER_PROPERTY,
    );
    Ok(Plugin::Ready {
        adapter: Arc::new(adapter),
        sandbox: source.is_sandbox(),
    })
}

/// A GA4 property id, `properties/<digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PropertyId(String);

impl TryFrom<String> for PropertyId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        settings::checked(
            value,
            |v| settings::prefixed_number(v, "properties/"),
            "a GA4 property such as properties/123456789",
        )
        .map(Self)
    }
}

impl PropertyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// GA4's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ga4Settings {
    #[serde(default)]
    pub property: Option<PropertyId>,
}

impl Ga4Settings {
    pub fn of(integration: &Integration) -> Result<Self> {
        settings::parse(&integration.settings)
    }
}

/// Below this share of any quota left, stop calling until it recovers.
pub fn low_quota_threshold() -> Decimal {
    Decimal::new(10, 2)
}

pub struct Ga4Adapter {
    pub google: GoogleOAuth,
    pub admin: AdminApi,
    pub data: DataApi,
    /// Concurrent Data API requests allowed per property from this process.
    pub per_property: usize,
    /// Rows asked for per page.
    pub page_limit: i64,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Last share of quota left seen per property, and when.
    quota: Mutex<HashMap<String, (Decimal, std::time::Instant)>>,
}

impl Ga4Adapter {
    pub fn new(google: GoogleOAuth, admin: AdminApi, data: DataApi, per_property: usize) -> Self {
        Self {
            google,
            admin,
            data,
            per_property: per_property.max(1),
            page_limit: PAGE_LIMIT,
            limits: Mutex::new(HashMap::new()),
            quota: Mutex::new(HashMap::new()),
        }
    }

    fn limit_for(&self, property: &str) -> Arc<Semaphore> {
        self.limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(property.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_property)))
            .clone()
    }

    fn request(&self, window: &kpi_core::kpi::DateRange, offset: i64) -> ReportRequest {
        ReportRequest {
            date_ranges: vec![DateRangeJson {
                start_date: window.from.to_string(),
                end_date: window.to.to_string(),
            }],
            dimensions: vec![Named {
                name: "date".into(),
            }],
            metrics: API_METRICS
                .iter()
                .map(|n| Named { name: (*n).into() })
                .collect(),
            // Days without traffic are recorded as zeros, not left out.
            keep_empty_rows: true,
            return_property_quota: true,
            limit: self.page_limit,
            offset,
        }
    }

    fn points(integration: &Integration, report: &Report) -> Result<Vec<KpiPoint>> {
        let currency = report
            .metadata
            .currency_code
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(Currency::parse)
            .transpose()?;
        let by_name: HashMap<&str, MetricSpec> = API_METRICS.iter().copied().zip(METRICS).collect();
        let mut out = Vec::with_capacity(report.rows.len() * METRICS.len());
        for row in &report.rows {
            let date = parse_date(
                &row.dimension_values
                    .first()
                    .ok_or_else(|| Error::transient("a GA4 row has no date"))?
                    .value,
            )?;
            for (header, value) in report.metric_headers.iter().zip(&row.metric_values) {
                let Some(metric) = by_name.get(header.name.as_str()).copied() else {
                    continue;
                };
                let value = parse_value(&value.value)?;
                let currency = (metric.unit == Unit::Currency)
                    .then(|| currency.clone())
                    .flatten();
                if metric.unit == Unit::Currency && currency.is_none() {
                    return Err(Error::config("the GA4 property reports no currency"));
                }
                out.push(KpiPoint::new(
                    integration.workspace.clone(),
                    integration.id,
                    metric,
                    date,
                    value,
                    currency,
                )?);
            }
        }
        Ok(out)
    }

    /// Every page of the window's report: one call, more only for long windows.
    async fn report(
        &self,
        token: &secrecy::SecretString,
        property: &str,
        window: &kpi_core::kpi::DateRange,
    ) -> Result<(Vec<Report>, u32)> {
        // Slow down before the quota runs out: while the last report said less
        // than 10% of some quota was left, wait for the hourly reset.
        let seen = self
            .quota
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(property)
            .copied();
        if let Some((left, at)) = seen
            && left < low_quota_threshold()
            && at.elapsed() < std::time::Duration::from_secs(3600)
        {
            let wait = std::time::Duration::from_secs(3600).saturating_sub(at.elapsed());
            return Err(Error::rate_limited(
                Some(wait.max(std::time::Duration::from_secs(60))),
                "Google Analytics quota for this property is nearly used up; waiting for it to recover",
            ));
        }
        let limit = self.limit_for(property);
        let mut pages = Vec::new();
        let mut calls = 0;
        let mut offset = 0i64;
        loop {
            let _permit = limit
                .acquire()
                .await
                .map_err(|_| Error::internal("GA4 request limiter closed"))?;
            calls += 1;
            let mut reports = self
                .data
                .batch_run_reports(token, property, &[self.request(window, offset)])
                .await?;
            let report = reports.pop().unwrap_or_default();
            let received = report.rows.len() as i64;
            let total = report.row_count;
            let left = report
                .property_quota
                .as_ref()
                .and_then(|q| q.min_share_left());
            if let Some(left) = left {
                self.quota
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(property.to_owned(), (left, std::time::Instant::now()));
            }
            let quota_low = left.is_some_and(|left| left < low_quota_threshold());
            pages.push(report);
            offset += received;
            if received == 0 || offset >= total {
                return Ok((pages, calls));
            }
            if quota_low {
                // Leave the rest of the quota for interactive use; retry later.
                return Err(Error::rate_limited(
                    Some(std::time::Duration::from_secs(600)),
                    "Google Analytics quota for this property is nearly used up",
                ));
            }
        }
    }
}

fn property_of(integration: &Integration) -> Result<PropertyId> {
    Ga4Settings::of(integration)
        .map_err(|e| Error::config(format!("the GA4 settings are not valid: {}", e.message())))?
        .property
        .ok_or_else(|| Error::config("no GA4 property chosen for this integration"))
}

fn tokens(credentials: &ConnectionCredentials) -> Result<&OAuthTokens> {
    match credentials {
        ConnectionCredentials::OAuth(t) => Ok(t),
        ConnectionCredentials::ApiKey { .. } => Err(Error::config("GA4 needs OAuth credentials")),
    }
}

fn options_of(properties: Vec<PropertyOption>) -> ProviderOptions {
    ProviderOptions {
        setting: "property".into(),
        options: properties
            .into_iter()
            .map(|o| OptionItem {
                selectable: true,
                id: o.property,
                name: o.display_name,
                group: Some(o.account_name),
                details:
                    serde_json::json!({"account": o.account, "property_type": o.property_type})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
            })
            .collect(),
        note: None,
    }
}

#[async_trait]
impl ProviderAdapter for Ga4Adapter {
    fn descriptor(&self) -> &ProviderDescriptor {
        &DESCRIPTOR
    }

    fn authorize(&self, request: &AuthorizationRequest<'_>) -> Result<Authorization> {
        self.google.authorize(request.state, request.redirect_uri)
    }

    async fn connect(&self, request: ConnectRequest<'_>) -> Result<ConnectOutcome> {
        let ConnectRequest::OAuthCode {
            code,
            redirect_uri,
            pkce_verifier,
            now,
        } = request
        else {
            return Err(Error::validation(
                "provider",
                "Google Analytics 4 connects with OAuth, not with an API key",
            ));
        };
        let verifier =
            pkce_verifier.ok_or_else(|| Error::internal("the OAuth state has no PKCE verifier"))?;
        let (tokens, user) = self
            .google
            .exchange_code(code, verifier, redirect_uri, now)
            .await?;
        Ok(ConnectOutcome {
            credentials: ConnectionCredentials::OAuth(tokens),
            settings: Settings::new(),
            // The property is chosen next, from the options.
            needs_configuration: true,
            account: user,
        })
    }

    async fn options(
        &self,
        _: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<ProviderOptions> {
        let (properties, _) = self
            .admin
            .properties(&tokens(credentials)?.access_token)
            .await?;
        Ok(options_of(properties))
    }

    fn validate_settings(&self, settings: &Settings) -> Result<()> {
        settings::parse::<Ga4Settings>(settings).map(|_| ())
    }

    async fn health(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<()> {
        let token = &tokens(credentials)?.access_token;
        match Ga4Settings::of(integration).ok().and_then(|s| s.property) {
            // A one-day report proves access to the chosen property itself.
            Some(property) => {
                let today = Utc::now().date_naive();
                let window = kpi_core::kpi::DateRange {
                    from: today,
                    to: today,
                };
                self.report(token, property.as_str(), &window)
                    .await
                    .map(|_| ())
            }
            // Before a property is chosen, listing them proves the grant works.
            None => self.admin.properties(token).await.map(|_| ()),
        }
    }

    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult> {
        let property = property_of(request.integration)?;
        let t = tokens(request.credentials)?;
        let property = property.as_str();
        let (pages, calls, refreshed) = match self
            .report(&t.access_token, property, &request.window)
            .await
        {
            Ok((pages, calls)) => (pages, calls, None),
            // An access token revoked early: one refresh, one more try.
            Err(e) if e.is_reauth() && t.refresh_token.is_some() => {
                let fresh = self.refresh(request.credentials).await?;
                let (pages, calls) = self
                    .report(&tokens(&fresh)?.access_token, property, &request.window)
                    .await?;
                (pages, calls + 1, Some(fresh))
            }
            Err(e) => return Err(e),
        };
        let mut points = Vec::new();
        let mut quota_remaining: Option<Decimal> = None;
        for page in &pages {
            points.extend(Self::points(request.integration, page)?);
            if let Some(left) = page
                .property_quota
                .as_ref()
                .and_then(|q| q.min_share_left())
            {
                quota_remaining = Some(quota_remaining.map_or(left, |q| q.min(left)));
            }
        }
        Ok(SyncResult {
            points,
            provider_calls: calls,
            quota_remaining,
            refreshed_credentials: refreshed,
        })
    }

    async fn disconnect(&self, credentials: &ConnectionCredentials) -> Result<()> {
        let t = tokens(credentials)?;
        self.google
            .revoke(t.refresh_token.as_ref().unwrap_or(&t.access_token))
            .await
    }

    async fn refresh(&self, credentials: &ConnectionCredentials) -> Result<ConnectionCredentials> {
        let t = tokens(credentials)?;
        let refresh = t
            .refresh_token
            .as_ref()
            .ok_or_else(|| Error::reauth("no refresh token; reconnect Google Analytics"))?;
        let mut fresh = self.google.refresh(refresh, Utc::now()).await?;
        // Google keeps the refresh token unless it rotates it.
        if fresh.refresh_token.is_none() {
            fresh.refresh_token = t.refresh_token.clone();
        }
        if fresh.scopes.is_empty() {
            fresh.scopes = t.scopes.clone();
        }
        Ok(ConnectionCredentials::OAuth(fresh))
    }
}
