//! Lambda: GA4 sync jobs from the GA4 queue.

use aws_lambda_events::sqs::SqsEvent;
use kpi_core::Provider;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::init_tracing();
    let state = kpi_lambda::app_state().await.map_err(|e| e.log_chain())?;
    let worker = kpi_lambda::worker_for(&state, Provider::Ga4).map_err(|e| e.log_chain())?;
    let (worker, queue) = (&worker, &state.queue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response = kpi_lambda::handle_sqs_batch(
            event.payload,
            |m| async move { worker.handle(&m).await },
            |receipt, delay| async move {
                kpi_lambda::delay_message(&**queue, Provider::Ga4, &receipt, delay).await
            },
        )
        .await;
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}
