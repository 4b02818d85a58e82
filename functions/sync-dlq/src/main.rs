//! Lambda: dead-lettered sync messages (all providers' DLQs).

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use kpi_sync::dlq::DlqHandler;
use kpi_sync::notifier::LogNotifier;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::init_tracing();
    let state = kpi_lambda::app_state().await.map_err(|e| e.log_chain())?;
    // Notices go to the log until the Resend-backed notifier arrives.
    let handler = DlqHandler {
        store: state.store.clone(),
        notifier: Arc::new(LogNotifier),
        clock: state.clock.clone(),
    };
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response = kpi_lambda::handle_sqs_batch(
            event.payload,
            |m| async move { handler.handle(&m).await },
            // A failed record becomes visible again after the DLQ's own timeout.
            |_, _| async {},
        )
        .await;
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}
