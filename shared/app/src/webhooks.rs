//! Provider webhooks, independent of HTTP: verify (the provider's adapter
//! checks the signature before reading anything), turn the resources a
//! delivery names into at most one sync of the recent days per integration
//! within a few minutes, and then remember the delivery so a redelivery does
//! nothing.

use chrono::Duration;
use kpi_core::job::JobTrigger;
use kpi_core::kpi::DateRange;
use kpi_core::ports::QueueName;
use kpi_core::ports::provider::{WebhookDelivery, WebhookEvents};
use kpi_core::{Error, Integration, IntegrationStatus, JobId, Provider, Result, WorkspaceScope};

use crate::service::{active_job, queue_job, resource_key};
use crate::state::AppState;

/// How long a delivery is remembered: Meta retries for up to 36 hours.
pub const DELIVERY_MEMORY_HOURS: i64 = 48;
/// Events for one integration within this many minutes of the first make one sync.
pub const COALESCE_MINUTES: i64 = 5;
/// The days a webhook-triggered sync re-reads (today and the two before).
pub const RECENT_DAYS: i64 = 3;
/// Bounds on the fan-out of one delivery.
const MAX_RESOURCES: usize = 50;
const MAX_INTEGRATIONS_PER_RESOURCE: u32 = 100;

/// What a delivery led to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The same delivery was handled before; nothing was done.
    pub duplicate: bool,
    /// Sync jobs queued (integrations already syncing or synced moments ago
    /// by an earlier event get none).
    pub jobs: Vec<JobId>,
}

/// The provider's webhook endpoint check.
pub fn challenge(
    state: &AppState,
    provider: Provider,
    params: &[(String, String)],
) -> Result<String> {
    state.registry.adapter(provider)?.webhook_challenge(params)
}

/// Handles one delivery. The delivery is remembered only once its work is
/// done (its jobs queued): a function that fails or is stopped half-way (a
/// timeout, a crash) leaves no record, and the provider's retry does the work.
/// Two copies arriving at once both act, which makes no second job: one job
/// at a time per integration, and one per few minutes.
pub async fn receive(
    state: &AppState,
    provider: Provider,
    delivery: &WebhookDelivery<'_>,
    request_id: Option<&str>,
) -> Result<Receipt> {
    let events = state.registry.adapter(provider)?.read_webhook(delivery)?;
    let key = format!("webhook-delivery#{provider}:{}", events.delivery);
    let receipt = once(state, &key, act(state, provider, &events, request_id)).await?;
    if !receipt.duplicate {
        tracing::info!(%provider, resources = events.resources.len(), jobs = receipt.jobs.len(), "webhook delivery handled");
    }
    Ok(receipt)
}

/// Does `work` unless the delivery `key` was handled before, and remembers
/// it only once the work is done: a function stopped half-way leaves no
/// record, and the provider's retry does the work.
async fn once(
    state: &AppState,
    key: &str,
    work: impl std::future::Future<Output = Result<Vec<JobId>>>,
) -> Result<Receipt> {
    let now = state.clock.now();
    if state.store.get_ephemeral(key, now).await?.is_some() {
        tracing::info!("webhook delivery seen before; ignored");
        return Ok(Receipt {
            duplicate: true,
            jobs: Vec::new(),
        });
    }
    let jobs = work.await?;
    state
        .store
        .put_ephemeral(
            key,
            &serde_json::json!({ "jobs": jobs.len() }),
            now + Duration::hours(DELIVERY_MEMORY_HOURS),
        )
        .await?;
    Ok(Receipt {
        duplicate: false,
        jobs,
    })
}

/// Handles one delivery to an integration's own endpoint: verified with the
/// signing secret that integration registered (any other secret, the
/// platform's included, is refused), and applied only to the emails that
/// integration sent.
pub async fn receive_for(
    state: &AppState,
    provider: Provider,
    id: kpi_core::IntegrationId,
    delivery: &WebhookDelivery<'_>,
) -> Result<Receipt> {
    let refused = || Error::unauthenticated("the webhook signature does not verify");
    let Some(link) = state
        .store
        .account_integrations(&crate::service::endpoint_key(id), 1)
        .await?
        .into_iter()
        .next()
    else {
        return Err(refused());
    };
    let scope = WorkspaceScope::for_system(
        link.workspace.clone(),
        "a delivery to an integration's own webhook endpoint",
    );
    let integration = match state.store.get_integration(&scope, id).await {
        Ok(i) if i.provider == provider => i,
        Ok(_) => return Err(refused()),
        Err(e) if e.is_not_found() => return Err(refused()),
        Err(e) => return Err(e),
    };
    let credentials = crate::service::open_credentials(state, &integration)
        .await
        .map_err(|_| refused())?;
    let events = state
        .registry
        .adapter(provider)?
        .read_webhook_for(&credentials, delivery)?;
    let key = format!("webhook-delivery#{provider}:{id}:{}", events.delivery);
    once(state, &key, async {
        record_email_events_of(state, &events, Some(id)).await?;
        Ok(Vec::new())
    })
    .await
}

async fn act(
    state: &AppState,
    provider: Provider,
    events: &WebhookEvents,
    request_id: Option<&str>,
) -> Result<Vec<JobId>> {
    record_email_events(state, events).await?;
    let descriptor = state.registry.descriptor(provider)?;
    let Some(setting) = descriptor.webhook_resource else {
        return Ok(Vec::new());
    };
    let mut jobs = Vec::new();
    for resource in events.resources.iter().take(MAX_RESOURCES) {
        let links = state
            .store
            .account_integrations(
                &resource_key(provider, resource),
                MAX_INTEGRATIONS_PER_RESOURCE,
            )
            .await?;
        for link in links {
            // The provider signed the delivery and the link names this
            // integration's workspace: the system acts for it.
            let scope = WorkspaceScope::for_system(
                link.workspace.clone(),
                "a signed provider webhook about a resource this integration uses",
            );
            let integration = match state.store.get_integration(&scope, link.integration).await {
                Ok(i) => i,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            // A link outlived by a settings change concerns nobody.
            let uses_it = integration.provider == provider
                && integration.settings.get(setting).and_then(|v| v.as_str())
                    == Some(resource.as_str());
            if !uses_it || integration.status() != IntegrationStatus::Connected {
                continue;
            }
            if let Some(job) = coalesced_sync(state, &scope, integration, request_id).await? {
                jobs.push(job);
            }
        }
    }
    Ok(jobs)
}

/// One sync of the recent days, unless a job is already queued or running (it
/// reads the newest numbers anyway) or an event minutes ago made one.
async fn coalesced_sync(
    state: &AppState,
    scope: &WorkspaceScope,
    mut integration: Integration,
    request_id: Option<&str>,
) -> Result<Option<JobId>> {
    if !state.queue.serves(QueueName::Work(integration.provider)) {
        return Ok(None);
    }
    for _ in 0..3 {
        if active_job(state, scope, &integration).await?.is_some() {
            return Ok(None);
        }
        // The first event's job opens a window of a few minutes; later
        // events in it find the record and make nothing. The record is
        // written once the job is queued, so a stopped function leaves none.
        let now = state.clock.now();
        let key = format!("webhook-sync#{}", integration.id);
        if state.store.get_ephemeral(&key, now).await?.is_some() {
            return Ok(None);
        }
        let today = now.date_naive();
        let window = DateRange::new(today - Duration::days(RECENT_DAYS - 1), today)?;
        match queue_job(
            state,
            scope,
            &mut integration,
            JobTrigger::Webhook,
            Some(window),
            request_id,
        )
        .await?
        {
            Some(job) => {
                state
                    .store
                    .put_ephemeral(
                        &key,
                        &serde_json::json!({ "job": job.id.to_string() }),
                        now + Duration::minutes(COALESCE_MINUTES),
                    )
                    .await?;
                return Ok(Some(job.id));
            }
            None => {
                // Another writer changed the integration: read it again.
                integration = state.store.get_integration(scope, integration.id).await?;
                if integration.status() != IntegrationStatus::Connected {
                    return Ok(None);
                }
            }
        }
    }
    Err(Error::conflict(
        "the integration kept changing; the provider will retry",
    ))
}

/// Email events: each send record takes the newest status, and a hard bounce
/// or a complaint suppresses the address in the workspace that sent it.
/// Events about emails this system did not send are ignored.
async fn record_email_events(state: &AppState, events: &WebhookEvents) -> Result<()> {
    record_email_events_of(state, events, None).await
}

/// Applies email events; with `only`, to the emails that integration sent
/// and no others (another account's email ids are not its business).
async fn record_email_events_of(
    state: &AppState,
    events: &WebhookEvents,
    only: Option<kpi_core::IntegrationId>,
) -> Result<()> {
    for event in &events.emails {
        let Some((workspace, id)) = state
            .store
            .email_by_provider_id(&event.provider_message_id)
            .await?
        else {
            tracing::info!("an event about an email not sent from here; ignored");
            continue;
        };
        // The provider signed the delivery; the pointer names the workspace
        // that sent the email.
        let scope = WorkspaceScope::for_system(workspace, "a signed event about an email it sent");
        let Some(mut record) = state.store.get_email(&scope, &id).await? else {
            continue;
        };
        if only.is_some() && record.integration != only {
            tracing::warn!("an event about an email another account sent; ignored");
            continue;
        }
        if event.at >= record.updated_at || record.status == "sent" {
            record.status = event.kind.status().to_owned();
            record.updated_at = event.at.max(record.updated_at);
            state.store.put_email(&scope, &record).await?;
        }
        if let Some(reason) = event.kind.suppression_reason() {
            for address in &record.to {
                state
                    .store
                    .suppress(&scope, address, &reason, event.at)
                    .await?;
                // Sent from the platform's account (no workspace integration):
                // that account's reputation is every workspace's.
                if record.integration.is_none() {
                    kpi_notify::consent::suppress_for_platform(
                        &*state.store,
                        address,
                        None,
                        &reason,
                        event.at,
                    )
                    .await?;
                }
                tracing::info!(
                    kind = record.kind,
                    "an address was suppressed after a {}",
                    event.kind.status()
                );
            }
        }
    }
    Ok(())
}
