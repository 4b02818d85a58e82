//! Credentials: opening them, refreshing them under a lease, and resealing renewed ones.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::integration::ErrorRecord;
use kpi_core::ports::CredentialContext;
use kpi_core::ports::provider::ProviderAdapter;
use kpi_core::{Error, Integration, IntegrationStatus, Result, WorkspaceScope};

use super::{Worker, mark_if_unchanged};

impl Worker {
    /// The integration's credentials, refreshed first when they are about to
    /// expire. One worker per integration refreshes (a lease); the others wait
    /// for its result and re-read instead of refreshing too.
    pub(super) async fn fresh_credentials(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        adapter: &dyn ProviderAdapter,
    ) -> Result<(Integration, ConnectionCredentials)> {
        let mut current = integration.clone();
        let lease = format!("refresh:{}", integration.id);
        // The owner is this attempt, not this process: two records of one
        // Lambda batch must not both hold the lease and refresh together.
        let owner = format!("{}:{}", self.id, uuid::Uuid::new_v4());
        for _ in 0..100 {
            let credentials = self.open(&current).await?;
            let now = self.clock.now();
            if !self.needs_refresh(&credentials, now) {
                return Ok((current, credentials));
            }
            if self
                .store
                .try_acquire_lease(&lease, &owner, now + self.settings.lease_ttl, now)
                .await?
            {
                let result = self
                    .refresh_holding_lease(scope, &current, credentials, adapter)
                    .await;
                let _ = self.store.release_lease(&lease, &owner).await;
                match result {
                    Ok(done) => return Ok(done),
                    // Someone changed the record meanwhile: read again and decide anew.
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            current = self.store.get_integration(scope, integration.id).await?;
            if current.status() != IntegrationStatus::Connected {
                return Err(Error::reauth("the integration needs to be reconnected"));
            }
        }
        Err(Error::transient(
            "another worker is still refreshing the token",
        ))
    }

    async fn refresh_holding_lease(
        &self,
        scope: &WorkspaceScope,
        current: &Integration,
        credentials: ConnectionCredentials,
        adapter: &dyn ProviderAdapter,
    ) -> Result<(Integration, ConnectionCredentials)> {
        // Re-read under the lease: the previous holder may have just refreshed.
        let latest = self.store.get_integration(scope, current.id).await?;
        let latest_credentials = self.open(&latest).await?;
        if !self.needs_refresh(&latest_credentials, self.clock.now()) {
            return Ok((latest, latest_credentials));
        }
        let _ = credentials;
        let refreshed = match adapter.refresh(&latest_credentials).await {
            Ok(r) => keep_refresh_token(&latest_credentials, r),
            Err(e) => {
                if e.is_reauth() {
                    let now = self.clock.now();
                    let record = ErrorRecord::from_error(&e, now);
                    // Not if the user reconnected meanwhile: the new grant stands.
                    let _ = mark_if_unchanged(&*self.store, &*self.clock, scope, &latest, |i| {
                        i.last_error = Some(record.clone());
                        if i.status() == IntegrationStatus::Connected {
                            i.transition(IntegrationStatus::NeedsReauth, now)?;
                        }
                        Ok(())
                    })
                    .await;
                }
                return Err(e);
            }
        };
        // What the provider returned is kept whatever bookkeeping happened to
        // the record meanwhile (a rotated refresh token is the only one that
        // works now); only a reconnect or disconnect by the user wins, and
        // then the caller reads again and uses theirs.
        let sealed = self
            .vault
            .seal(&CredentialContext::of(&latest), &refreshed)
            .await?;
        match mark_if_unchanged(&*self.store, &*self.clock, scope, &latest, |i| {
            i.credentials = Some(sealed.clone());
            Ok(())
        })
        .await?
        {
            Some(stored) => Ok((stored, refreshed)),
            None => Err(Error::conflict(
                "the integration was reconnected or disconnected during the refresh",
            )),
        }
    }

    /// Stores credentials the adapter renewed, unless the user reconnected or
    /// disconnected since `read`: then theirs stand and these are dropped.
    pub(super) async fn store_credentials(
        &self,
        scope: &WorkspaceScope,
        read: &Integration,
        old: &ConnectionCredentials,
        new: ConnectionCredentials,
    ) -> Result<Option<Integration>> {
        let new = keep_refresh_token(old, new);
        let sealed = self.vault.seal(&CredentialContext::of(read), &new).await?;
        let stored = mark_if_unchanged(&*self.store, &*self.clock, scope, read, |i| {
            i.credentials = Some(sealed.clone());
            Ok(())
        })
        .await?;
        if stored.is_none() {
            tracing::info!(
                "renewed credentials dropped: the integration was reconnected or disconnected meanwhile"
            );
        }
        Ok(stored)
    }

    fn needs_refresh(&self, credentials: &ConnectionCredentials, now: DateTime<Utc>) -> bool {
        match credentials {
            ConnectionCredentials::OAuth(t) => {
                t.refresh_token.is_some() && t.expires_within(now, self.settings.refresh_margin)
            }
            ConnectionCredentials::ApiKey { .. } => false,
        }
    }

    async fn open(&self, integration: &Integration) -> Result<ConnectionCredentials> {
        let sealed = integration
            .credentials
            .as_ref()
            .ok_or_else(|| Error::reauth("the integration has no credentials; reconnect it"))?;
        self.vault
            .open(&CredentialContext::of(integration), sealed)
            .await
    }
}

/// Providers that do not rotate refresh tokens send none back: keep the old one.
fn keep_refresh_token(
    old: &ConnectionCredentials,
    new: ConnectionCredentials,
) -> ConnectionCredentials {
    match (old, new) {
        (ConnectionCredentials::OAuth(o), ConnectionCredentials::OAuth(mut n)) => {
            if n.refresh_token.is_none() {
                n.refresh_token = o.refresh_token.clone();
            }
            if n.scopes.is_empty() {
                n.scopes = o.scopes.clone();
            }
            ConnectionCredentials::OAuth(n)
        }
        (_, n) => n,
    }
}
