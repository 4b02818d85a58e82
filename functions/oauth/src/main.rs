//! Lambda for the OAuth route group (start and callback).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_oauth().await
}
