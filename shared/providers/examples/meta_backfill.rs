//! Times a 37-month Meta Ads backfill against the sandbox, the way the engine
//! runs it: windows of the provider's longest window (366 days), each read as
//! an async report run, and a 90-day backfill and a daily (28-day lookback)
//! sync for comparison. Prints one JSON line per case: days, provider calls,
//! report runs, points and milliseconds.
//!
//! `cargo run --release -p kpi-providers --example meta_backfill`

use std::time::{Duration, Instant};

use chrono::{Months, Utc};
use kpi_core::credentials::{ConnectionCredentials, OAuthTokens};
use kpi_core::kpi::DateRange;
use kpi_core::ports::provider::SyncRequest;
use kpi_core::registry::Plugin;
use kpi_core::{Integration, IntegrationId, WorkspaceId};
use kpi_providers::{BuildContext, SandboxSite, http, meta};
use kpi_sandbox::{Sandbox, SandboxConfig};
use secrecy::SecretString;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sandbox = Sandbox::new(SandboxConfig::default());
    let base = sandbox.serve().await.expect("sandbox");
    let site = SandboxSite {
        base: url::Url::parse(&base).expect("url"),
        app_credentials: sandbox.app_credentials(),
    };
    let vars = kpi_core::config::Vars::new(|_| None);
    let ctx = BuildContext {
        vars: &vars,
        http: http::client(Duration::from_secs(30)).expect("client"),
        sandbox: Some(&site),
        sandbox_setting: None,
        production: false,
    };
    let Ok(Plugin::Ready { adapter, .. }) = meta::plugin(&ctx) else {
        panic!("the Meta plug-in did not build");
    };
    let credentials = ConnectionCredentials::OAuth(OAuthTokens {
        access_token: SecretString::from(sandbox.meta_token()),
        refresh_token: None,
        expires_at: None,
        scopes: vec!["ads_read".into()],
    });
    let mut integration = Integration::new(
        IntegrationId::new_random(),
        WorkspaceId::parse("bench").expect("ws"),
        kpi_providers::meta::ID,
        "Meta Ads",
        Utc::now(),
    );
    integration
        .settings
        .insert("ad_account".into(), "act_1000000001".into());

    let today = Utc::now().date_naive();
    let history =
        today.checked_sub_months(Months::new(37)).expect("date") + chrono::Duration::days(1);
    for (name, from) in [
        (
            "daily (28-day lookback)",
            today - chrono::Duration::days(28),
        ),
        ("90-day backfill", today - chrono::Duration::days(89)),
        ("37-month backfill", history),
    ] {
        let window = DateRange::new(from, today).expect("window");
        let runs_before = sandbox.counters().meta_report_runs;
        let started = Instant::now();
        let (mut calls, mut points) = (0, 0);
        for chunk in chunks(window, adapter.descriptor().max_window_days) {
            let result = adapter
                .sync(SyncRequest {
                    integration: &integration,
                    credentials: &credentials,
                    window: chunk,
                    records: None,
                })
                .await
                .expect("sync");
            calls += result.provider_calls;
            points += result.points.len();
        }
        println!(
            "{{\"case\": \"{name}\", \"days\": {}, \"provider_calls\": {calls}, \"report_runs\": {}, \"points\": {points}, \"ms\": {}}}",
            window.days(),
            sandbox.counters().meta_report_runs - runs_before,
            started.elapsed().as_millis()
        );
    }
}

/// The engine's split of a backfill into windows of at most `days` days.
fn chunks(window: DateRange, days: u32) -> Vec<DateRange> {
    let mut out = Vec::new();
    let mut from = window.from;
    while from <= window.to {
        let to = (from + chrono::Duration::days(i64::from(days) - 1)).min(window.to);
        out.push(DateRange { from, to });
        from = to + chrono::Duration::days(1);
    }
    out
}
