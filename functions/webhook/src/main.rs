//! Lambda for `/v1/webhooks/{provider}` and `/v1/webhooks/{provider}/{integration}`:
//! every provider's endpoint checks and signed deliveries, found through the
//! provider registry, turned into queued syncs and email records.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_webhook().await
}
