//! Lambda: on each EventBridge schedule tick, fan due integrations out.

use kpi_sync::Scheduler;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    kpi_lambda::init_tracing();
    let state = kpi_lambda::app_state().await.map_err(|e| e.log_chain())?;
    let scheduler = Scheduler {
        store: state.store.clone(),
        queue: state.queue.clone(),
        clock: state.clock.clone(),
        settings: Default::default(),
    };
    let scheduler = &scheduler;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let report = scheduler.run_once().await.map_err(|e| e.log_chain())?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}
