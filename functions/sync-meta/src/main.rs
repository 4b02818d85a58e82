//! Lambda: Meta Ads sync jobs from the Meta Ads queue.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_worker(kpi_core::Provider::META_ADS).await
}
