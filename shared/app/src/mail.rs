//! The email side of the app state: the outbox (the workspace's own account
//! with the provider that sends email, else the platform's for notices), report sending and alert
//! evaluation, built the same way for every function.

use std::sync::Arc;

use kpi_notify::reports::ReportSender;
use kpi_notify::unsubscribe::{LinkKey, Links};
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
    let (mail_provider, mailer) = state.registry.mailer().unzip();
    Arc::new(Outbox {
        store: state.store.clone(),
        vault: state.vault.clone(),
        mailer,
        mail_provider,
        platform,
        clock: state.clock.clone(),
        links: links(state).map(Arc::new),
        platform_daily_cap: kpi_notify::consent::PLATFORM_DAILY_CAP,
    })
}

/// The unsubscribe links of this deployment, when `KPI_LINK_KEY` is set
/// (checked when the configuration was read).
pub fn links(state: &AppState) -> Option<Links> {
    let key = state.config.notices.link_key.as_ref()?;
    Some(Links {
        key: LinkKey::new(key).ok()?,
        public_url: state.config.public_url.to_string(),
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
