//! One run of a job: the sync window, its chunks, the provider calls and the KPI upserts.

use std::time::Instant;

use chrono::NaiveDate;
use kpi_core::kpi::DateRange;
use kpi_core::ports::Store;
use kpi_core::ports::provider::{SyncRequest, SyncResult};
use kpi_core::{Error, Integration, Result, SyncJob, WorkspaceScope};

use super::Worker;

impl Worker {
    /// Credentials, refresh, the provider calls and the upserts of every chunk
    /// but the last, whose points are left to the job's own last write (one
    /// transaction with it where the store can). Errors carry the provider
    /// calls made so far.
    pub(super) async fn run(
        &self,
        scope: &WorkspaceScope,
        current: &mut Integration,
        job: &SyncJob,
        deadline: Option<Instant>,
    ) -> std::result::Result<Ran, (Error, u32)> {
        let integration = current.clone();
        let adapter = self
            .registry
            .adapter(integration.provider)
            .cloned()
            .map_err(|e| (e, 0))?;
        let max_window_days = adapter.descriptor().max_window_days;
        if let Some(at) = integration.credentials_expire_at
            && at <= self.clock.now()
        {
            // Nothing to refresh with: only the user can reconnect.
            return Err((
                Error::reauth(format!(
                    "the {} connection expired on {}; reconnect the integration",
                    adapter.descriptor().display_name,
                    at.date_naive()
                )),
                0,
            ));
        }
        let (integration, credentials) = self
            .fresh_credentials(scope, &integration, &*adapter)
            .await
            .map_err(|e| (e, 0))?;
        *current = integration.clone();
        let today = self.clock.now().date_naive();
        let window = job.window.unwrap_or_else(|| {
            self.window_for(&integration, adapter.descriptor().lookback_days, today)
        });
        let mut total = SyncResult::default();
        let mut written = 0;
        let chunks = chunks(window, max_window_days);
        let last = chunks.len().saturating_sub(1);
        for (k, chunk) in chunks.into_iter().enumerate() {
            let records = ScopedRecords {
                store: &*self.store,
                scope,
            };
            let request = SyncRequest {
                integration: &integration,
                credentials: &credentials,
                window: chunk,
                records: Some(&records),
            };
            let timeout = match deadline {
                Some(d) => self
                    .settings
                    .sync_timeout
                    .min(d.saturating_duration_since(Instant::now())),
                None => self.settings.sync_timeout,
            };
            if timeout.is_zero() {
                return Err((
                    Error::transient(
                        "the worker ran out of time in this invocation; the next delivery goes on",
                    ),
                    total.provider_calls,
                ));
            }
            let result = match tokio::time::timeout(timeout, adapter.sync(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err((e, total.provider_calls)),
                Err(_) => {
                    return Err((
                        Error::transient(format!(
                            "{} did not finish in time",
                            integration.provider
                        )),
                        total.provider_calls,
                    ));
                }
            };
            total.provider_calls += result.provider_calls;
            if let Some(refreshed) = result.refreshed_credentials.clone() {
                // The adapter refreshed mid-sync (a 401 answered by a refresh):
                // keep the new token, compare-and-swap like the leased refresh.
                if let Some(stored) = self
                    .store_credentials(scope, current, &credentials, refreshed)
                    .await
                    .map_err(|e| (e, total.provider_calls))?
                {
                    *current = stored;
                }
            }
            total.quota_remaining = match (total.quota_remaining, result.quota_remaining) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(p) = result
                .points
                .iter()
                .find(|p| p.integration != integration.id || p.workspace != integration.workspace)
            {
                return Err((
                    Error::internal(format!(
                        "adapter returned a point of another integration ({})",
                        p.integration
                    )),
                    total.provider_calls,
                ));
            }
            if k < last {
                for batch in result.points.chunks(self.settings.upsert_batch.max(1)) {
                    self.store
                        .upsert_kpis(scope, batch)
                        .await
                        .map_err(|e| (e, total.provider_calls))?;
                }
                written += result.points.len();
            }
            total.points.extend(result.points);
        }
        Ok(Ran {
            result: total,
            window,
            written,
        })
    }

    /// The window of an unscheduled sync: a backfill the first time, then from
    /// the last success minus the provider's lookback (`default_lookback` unless
    /// the settings override it).
    pub fn window_for(
        &self,
        integration: &Integration,
        default_lookback: u32,
        today: NaiveDate,
    ) -> DateRange {
        let from = match integration.last_success_at {
            None => {
                today - chrono::Duration::days(i64::from(self.settings.backfill_days.max(1)) - 1)
            }
            Some(last) => {
                let lookback = self
                    .settings
                    .lookback_days
                    .get(&integration.provider)
                    .copied()
                    .unwrap_or(default_lookback);
                last.date_naive().min(today) - chrono::Duration::days(i64::from(lookback))
            }
        };
        DateRange { from, to: today }
    }
}

/// What a run brought: everything the provider answered, the window, and how
/// many of the points (the first ones) are written already.
pub(super) struct Ran {
    pub result: SyncResult,
    pub window: DateRange,
    pub written: usize,
}

impl Ran {
    /// The points left for the job's last write.
    pub fn unwritten(&self) -> &[kpi_core::KpiPoint] {
        &self.result.points[self.written..]
    }
}

/// Splits `window` into consecutive windows of at most `days` days.
pub fn chunks(window: DateRange, days: u32) -> Vec<DateRange> {
    let days = i64::from(days.max(1));
    let mut out = Vec::new();
    let mut from = window.from;
    while from <= window.to {
        let to = (from + chrono::Duration::days(days - 1)).min(window.to);
        out.push(DateRange { from, to });
        from = to + chrono::Duration::days(1);
    }
    out
}

/// The store's records of one workspace, as a sync reads them.
struct ScopedRecords<'a> {
    store: &'a dyn Store,
    scope: &'a WorkspaceScope,
}

#[async_trait::async_trait]
impl kpi_core::ports::provider::SentEmails for ScopedRecords<'_> {
    async fn sent_by(
        &self,
        integration: &Integration,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<kpi_core::ports::store::EmailRecord>> {
        self.store
            .emails_sent_by(self.scope, integration.id, from, to)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfills_are_chunked_without_gaps_or_overlaps() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let parts = chunks(
            DateRange {
                from: d(1, 1),
                to: d(3, 31),
            },
            30,
        );
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0],
            DateRange {
                from: d(1, 1),
                to: d(1, 30)
            }
        );
        assert_eq!(parts[2].to, d(3, 31));
        for w in parts.windows(2) {
            assert_eq!(w[0].to + chrono::Duration::days(1), w[1].from);
        }
        assert_eq!(
            chunks(
                DateRange {
                    from: d(5, 5),
                    to: d(5, 5)
                },
                90
            )
            .len(),
            1
        );
    }
}
