//! The email side of the app state: the outbox (the workspace's Resend
//! account, else the platform's for notices), report sending and alert
//! evaluation, built the same way for every function.

use std::sync::Arc;

use kpi_core::Provider;
use kpi_notify::reports::ReportSender;
use kpi_notify::{AlertEvaluator, Outbox, PlatformSender};

use crate::state::AppState;

pub fn outbox(state: &AppState) -> Arc<Outbox> {
    let notices = &state.config.notices;
    let platform = match (&notices.system_api_key, &notices.system_email_from) {
        (Some(key), Some(from)) => Some(PlatformSender {
            key: key.clone(),
            from: from.clone(),
        }),
        _ => None,
    };
    Arc::new(Outbox {
        store: state.store.clone(),
        vault: state.vault.clone(),
        mailer: state
            .registry
            .adapter(Provider::RESEND)
            .ok()
            .and_then(|a| a.mailer()),
        platform,
        clock: state.clock.clone(),
    })
}

pub fn report_sender(state: &AppState) -> ReportSender {
    ReportSender {
        outbox: outbox(state),
        registry: state.registry.clone(),
        public_url: state.config.public_url.clone(),
    }
}

pub fn alert_evaluator(state: &AppState) -> AlertEvaluator {
    AlertEvaluator {
        outbox: outbox(state),
        registry: state.registry.clone(),
        public_url: state.config.public_url.clone(),
    }
}
