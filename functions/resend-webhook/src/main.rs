//! Lambda for `POST /v1/webhooks/resend`: Resend's Svix-signed email events,
//! recorded on the sends, with hard bounces and complaints suppressed.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::run_resend_webhook().await
}
