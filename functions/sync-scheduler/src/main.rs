//! Lambda: on each EventBridge schedule tick, fan due integrations out.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_scheduler().await
}
