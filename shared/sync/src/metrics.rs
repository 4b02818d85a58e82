//! One CloudWatch Embedded Metric Format record and one structured log line per
//! job. EMF is a JSON document on stdout that CloudWatch turns into metrics; it
//! is small enough to write directly rather than through a metrics framework.

use std::io::Write as _;
use std::time::Duration;

use kpi_core::{JobStatus, SyncJob};
use serde_json::json;

pub const NAMESPACE: &str = "KpiIntegrations";

/// The EMF document of one finished attempt of `job`.
pub fn emf_record(
    job: &SyncJob,
    duration: Duration,
    failed: bool,
    now_ms: i64,
) -> serde_json::Value {
    json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["provider"]],
                "Metrics": [
                    {"Name": "SyncDuration", "Unit": "Milliseconds"},
                    {"Name": "RowsSynced", "Unit": "Count"},
                    {"Name": "ProviderCalls", "Unit": "Count"},
                    {"Name": "SyncFailed", "Unit": "Count"}
                ]
            }]
        },
        "provider": job.provider.as_str(),
        "SyncDuration": duration.as_millis() as u64,
        "RowsSynced": job.rows_written,
        "ProviderCalls": job.provider_calls,
        "SyncFailed": u32::from(failed),
        // Searchable context; never credentials.
        "job": job.id.to_string(),
        "workspace": job.workspace.as_str(),
        "integration": job.integration.to_string(),
        "status": job.status().as_str(),
        "attempts": job.attempts,
    })
}

/// Emits the EMF record (stdout) and the structured log line of one attempt.
pub fn record_attempt(job: &SyncJob, duration: Duration, now_ms: i64) {
    let failed = !matches!(job.status(), JobStatus::Succeeded);
    let record = emf_record(job, duration, failed, now_ms);
    let _ = writeln!(std::io::stdout(), "{record}");
    tracing::info!(
        job = %job.id,
        workspace = %job.workspace,
        integration = %job.integration,
        provider = %job.provider,
        status = %job.status(),
        attempts = job.attempts,
        rows = job.rows_written,
        provider_calls = job.provider_calls,
        duration_ms = duration.as_millis() as u64,
        error = job.last_error.as_ref().map(|e| e.code.as_str()).unwrap_or(""),
        "sync job attempt finished"
    );
}

/// One refused webhook delivery (bad, missing or stale signature), as an EMF
/// count per provider: the `WebhookSignatureFailures` alarm watches it.
pub fn record_webhook_signature_failure(provider: &str, now_ms: i64) {
    let record = json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["provider"]],
                "Metrics": [{"Name": "WebhookSignatureFailed", "Unit": "Count"}]
            }]
        },
        "provider": provider,
        "WebhookSignatureFailed": 1,
    });
    let _ = writeln!(std::io::stdout(), "{record}");
}
