//! Lambda for `GET/POST /v1/webhooks/meta`: Meta's endpoint check and its
//! signed ad-account deliveries, turned into queued syncs.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_meta_webhook().await
}
