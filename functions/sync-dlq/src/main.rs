//! Lambda: dead-lettered sync messages (all providers' DLQs).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_dlq().await
}
