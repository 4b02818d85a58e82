//! Lambda: GA4 sync jobs from the GA4 queue.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_worker(kpi_core::Provider::GA4).await
}
