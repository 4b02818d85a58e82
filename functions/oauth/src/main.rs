//! Lambda for the OAuth route group (start and callback).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    kpi_lambda::serve(|state| {
        use kpi_app::http;
        http::with_defaults(http::oauth_router()).with_state(state)
    })
    .await
}
