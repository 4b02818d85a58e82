//! Lambda for the workspace API route group (and, until the admin dashboard has
//! its own function, the operators' API).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_api().await
}
