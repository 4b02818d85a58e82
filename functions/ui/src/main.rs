//! Lambda for the pages: `/settings/…`, `/admin/sync-jobs…` and `/assets/…`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::serve_with(kpi_ui::ui_function(), |live| {
        kpi_ui::early(live.environment_config())
    })
    .await
}
