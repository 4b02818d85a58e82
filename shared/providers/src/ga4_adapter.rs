//! The GA4 integration adapter: the daily KPI metrics of one property, from one
//! `batchRunReports` call per window (paged by offset only when a window has
//! more rows than a page), with token refresh, quota awareness and a cap on
//! concurrent requests per property.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use kpi_core::adapter::{
    ConnectOutcome, ConnectRequest, HealthStatus, IntegrationAdapter, SyncRequest, SyncResult,
};
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::kpi::Currency;
use kpi_core::{Error, Integration, KpiPoint, Metric, Provider, Result};
use rust_decimal::Decimal;
use tokio::sync::Semaphore;

use crate::ga4::{
    AdminApi, DataApi, DateRangeJson, Named, PAGE_LIMIT, Report, ReportRequest, parse_date,
    parse_value,
};
use crate::google::GoogleOAuth;

/// The GA4 API metric behind each KPI metric (`keyEvents`, not `conversions`).
pub const METRICS: [(&str, Metric); 10] = [
    ("sessions", Metric::Ga4Sessions),
    ("totalUsers", Metric::Ga4TotalUsers),
    ("newUsers", Metric::Ga4NewUsers),
    ("activeUsers", Metric::Ga4ActiveUsers),
    ("screenPageViews", Metric::Ga4ScreenPageViews),
    ("engagementRate", Metric::Ga4EngagementRate),
    ("bounceRate", Metric::Ga4BounceRate),
    (
        "averageSessionDuration",
        Metric::Ga4AvgSessionDurationSeconds,
    ),
    ("keyEvents", Metric::Ga4KeyEvents),
    ("totalRevenue", Metric::Ga4TotalRevenue),
];

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
            metrics: METRICS
                .iter()
                .map(|(n, _)| Named { name: (*n).into() })
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
        let by_name: HashMap<&str, Metric> = METRICS.iter().copied().collect();
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
                let currency = (metric.unit() == kpi_core::metric::Unit::Currency)
                    .then(|| currency.clone())
                    .flatten();
                if metric.unit() == kpi_core::metric::Unit::Currency && currency.is_none() {
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

fn property_of(integration: &Integration) -> Result<&str> {
    integration
        .settings
        .get("property")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::config("no GA4 property chosen for this integration"))
}

fn tokens(credentials: &ConnectionCredentials) -> Result<&kpi_core::credentials::OAuthTokens> {
    match credentials {
        ConnectionCredentials::OAuth(t) => Ok(t),
        ConnectionCredentials::ApiKey { .. } => Err(Error::config("GA4 needs OAuth credentials")),
    }
}

#[async_trait]
impl IntegrationAdapter for Ga4Adapter {
    fn provider(&self) -> Provider {
        Provider::Ga4
    }

    async fn connect(&self, request: ConnectRequest) -> Result<ConnectOutcome> {
        let t = tokens(&request.credentials)?;
        let (properties, _) = self.admin.properties(&t.access_token).await?;
        Ok(ConnectOutcome {
            display_name: "Google Analytics 4".into(),
            needs_configuration: true,
            credentials: if properties.is_empty() {
                return Err(Error::validation(
                    "property",
                    "this Google account has no Google Analytics 4 property",
                ));
            } else {
                request.credentials
            },
        })
    }

    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult> {
        let property = property_of(request.integration)?;
        let t = tokens(request.credentials)?;
        let (pages, calls, refreshed) = match self
            .report(&t.access_token, property, &request.window)
            .await
        {
            Ok((pages, calls)) => (pages, calls, None),
            // An access token revoked early: one refresh, one more try.
            Err(e) if e.code() == "reauth_required" && t.refresh_token.is_some() => {
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

    async fn health_check(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<HealthStatus> {
        let t = tokens(credentials)?;
        let property = property_of(integration)?;
        let today = Utc::now().date_naive();
        let window = kpi_core::kpi::DateRange {
            from: today,
            to: today,
        };
        Ok(
            match self.report(&t.access_token, property, &window).await {
                Ok(_) => HealthStatus::Healthy,
                Err(e) => match e.kind() {
                    kpi_core::ErrorKind::Reauth => HealthStatus::NeedsReauth {
                        message: e.message().to_owned(),
                    },
                    kpi_core::ErrorKind::Config => HealthStatus::NoAccess {
                        message: e.message().to_owned(),
                    },
                    kpi_core::ErrorKind::RateLimited { retry_after } => {
                        HealthStatus::QuotaExhausted {
                            until: retry_after
                                .and_then(|d| chrono::Duration::from_std(d).ok())
                                .map(|d| Utc::now() + d),
                        }
                    }
                    _ => HealthStatus::Unavailable {
                        message: e.message().to_owned(),
                    },
                },
            },
        )
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

    fn max_window_days(&self) -> u32 {
        // 10,000 rows per page: a year of days is still one call.
        366
    }
}
