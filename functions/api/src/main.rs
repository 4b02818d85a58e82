//! Lambda for the workspace API route group (and, until the admin dashboard has
//! its own function, the operators' API).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    kpi_lambda::serve(|state| {
        use kpi_app::http;
        http::with_defaults(
            http::system_router()
                .merge(http::api_router())
                .merge(http::admin_router()),
        )
        .with_state(state)
    })
    .await
}
