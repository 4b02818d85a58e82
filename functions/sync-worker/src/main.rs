//! Lambda: sync jobs from a provider's work queue. One binary for every
//! provider: the queue a batch comes from names the provider.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_worker().await
}
