//! Lambda: Resend sync jobs (daily delivery KPIs) from the Resend queue.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_worker(kpi_core::Provider::RESEND).await
}
