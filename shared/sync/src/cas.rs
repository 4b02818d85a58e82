//! Read-modify-write of versioned records, with one policy everywhere.
//!
//! Stores write integrations, jobs and alert rules compare-and-swap on their
//! version: a write made against a version someone else moved fails with a
//! conflict. Every read-modify-write goes through these helpers, which read
//! again and re-apply the change after a lost race, spread by a jittered wait
//! (many workers finishing jobs of one integration at once), up to
//! [`ATTEMPTS`] times. A change that keeps losing ends in the conflict error,
//! for the caller to report: no write is ever dropped silently. An error the
//! change itself returns (it decided not to write) ends the loop at once.

use std::time::Duration;

use kpi_core::alert::AlertRule;
use kpi_core::ids::{AlertId, IntegrationId};
use kpi_core::ports::{Clock, Store};
use kpi_core::{Integration, Result, SyncJob, WorkspaceScope};

/// Tries of one read-modify-write: enough for a few dozen writers at once.
pub const ATTEMPTS: u32 = 30;

/// The wait before try `attempt + 1`: random in 5 ms..=5·2^attempt ms, at
/// most 250 ms, so writers that collided do not collide again in step.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = 5u64.saturating_mul(1 << attempt.min(6)).min(250);
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
    Duration::from_millis(5 + random * ceiling.saturating_sub(5) / 1000)
}

/// After a lost race `attempt` (1-based): wait, and say whether to go on.
async fn lost(attempt: u32) -> Result<()> {
    if attempt >= ATTEMPTS {
        return Err(kpi_core::Error::conflict(format!(
            "the record kept changing: {ATTEMPTS} writes lost their race"
        )));
    }
    tokio::time::sleep(backoff(attempt)).await;
    Ok(())
}

/// Reads integration `id`, applies `change`, writes it; again on a lost race.
pub async fn modify_integration(
    store: &dyn Store,
    clock: &dyn Clock,
    scope: &WorkspaceScope,
    id: IntegrationId,
    mut change: impl FnMut(&mut Integration) -> Result<()>,
) -> Result<Integration> {
    for attempt in 1.. {
        let mut i = store.get_integration(scope, id).await?;
        change(&mut i)?;
        i.updated_at = clock.now();
        match won(store.update_integration(scope, &i).await)? {
            Some(written) => return Ok(written),
            None => lost(attempt).await?,
        }
    }
    unreachable!("the loop ends by returning")
}

/// Like [`modify_integration`], but only while the integration still has the
/// credentials and status that `read` had: a reconnect or disconnect made
/// meanwhile wins, and the change is dropped (`Ok(None)`, said so, not an
/// error). A lost race with bookkeeping (another job's timestamps) is tried
/// again on the fresh record.
pub async fn modify_integration_if_unchanged(
    store: &dyn Store,
    clock: &dyn Clock,
    scope: &WorkspaceScope,
    read: &Integration,
    mut change: impl FnMut(&mut Integration) -> Result<()>,
) -> Result<Option<Integration>> {
    for attempt in 1.. {
        let mut i = store.get_integration(scope, read.id).await?;
        if i.credentials != read.credentials || i.status() != read.status() {
            return Ok(None);
        }
        change(&mut i)?;
        i.updated_at = clock.now();
        match won(store.update_integration(scope, &i).await)? {
            Some(written) => return Ok(Some(written)),
            None => lost(attempt).await?,
        }
    }
    unreachable!("the loop ends by returning")
}

/// Reads alert rule `id`, applies `change`, writes it; again on a lost race.
pub async fn modify_alert(
    store: &dyn Store,
    clock: &dyn Clock,
    scope: &WorkspaceScope,
    id: AlertId,
    mut change: impl FnMut(&mut AlertRule) -> Result<()>,
) -> Result<AlertRule> {
    for attempt in 1.. {
        let mut rule = store.get_alert(scope, id).await?;
        change(&mut rule)?;
        rule.updated_at = clock.now();
        match won(store.update_alert(scope, &rule).await)? {
            Some(written) => return Ok(written),
            None => lost(attempt).await?,
        }
    }
    unreachable!("the loop ends by returning")
}

/// Applies `change` to `seen` (the job as the caller last read it) and writes
/// it; after a lost race, to the job read again. `change` returns `false` to
/// leave the job as it is (it moved on meanwhile): `Ok(None)`.
pub async fn modify_job(
    store: &dyn Store,
    scope: &WorkspaceScope,
    seen: &SyncJob,
    mut change: impl FnMut(&mut SyncJob) -> bool,
) -> Result<Option<SyncJob>> {
    let mut job = seen.clone();
    for attempt in 1.. {
        if !change(&mut job) {
            return Ok(None);
        }
        match won(store.update_job(scope, &job).await)? {
            Some(written) => return Ok(Some(written)),
            None => {
                lost(attempt).await?;
                job = store.get_job(scope, seen.id).await?;
            }
        }
    }
    unreachable!("the loop ends by returning")
}

/// A write's result, a lost race as `None`.
fn won<T>(written: Result<T>) -> Result<Option<T>> {
    match written {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_conflict() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_then_cap() {
        for attempt in 1..40 {
            let d = backoff(attempt);
            assert!(
                d >= Duration::from_millis(5) && d <= Duration::from_millis(250),
                "{d:?}"
            );
        }
        assert!(backoff(1) <= Duration::from_millis(10));
    }
}
