//! The store contract (see `kpi_core::ports::store`), case by case.

mod alerts;
mod coordination;
mod email;
mod integrations;
mod jobs;
mod kpis;

pub use alerts::{alert_rules_and_their_history, due_reports_come_from_an_index};
pub use coordination::{
    dedupe_has_one_first_under_concurrency, ephemeral_records_expire_and_are_taken_once,
    expiry_is_honoured_before_deletion, leases_are_exclusive_until_they_expire,
    many_concurrent_consumers_one_winner, oauth_state_is_consumed_once,
};
pub use email::email_records_and_suppressions;
pub use integrations::{
    account_links_count_the_integrations_of_one_provider_account,
    concurrent_changes_to_one_integration_all_land, conditional_write_loses_to_concurrent_writer,
    integration_crud_round_trip, other_workspace_sees_nothing, pagination_across_pages,
    workspace_settings_are_per_workspace_and_overwritten,
};
pub use jobs::{
    due_integrations_are_connected_and_due, job_and_integration_commit_together,
    jobs_by_status_for_operators,
};
pub use kpis::{a_job_finishes_with_its_points, kpi_upsert_overwrites_and_queries_ranges};

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use kpi_core::job::JobTrigger;
use kpi_core::kpi::Currency;
use kpi_core::metric::MetricSpec;
use kpi_core::page::{Page, PageRequest};
use kpi_core::ports::Store;
use kpi_core::{
    AdminScope, Integration, IntegrationId, IntegrationStatus, JobId, KpiPoint, Provider, SyncJob,
    WorkspaceId, WorkspaceScope,
};
use rust_decimal::Decimal;

pub fn scope(ws: &str) -> WorkspaceScope {
    WorkspaceScope::for_system(WorkspaceId::parse(ws).unwrap(), "conformance test")
}

fn admin() -> AdminScope {
    AdminScope::for_system("conformance test")
}

/// Truncated to microseconds: what both backends keep of a timestamp.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

pub fn integration(ws: &str, provider: Provider) -> Integration {
    Integration::new(
        IntegrationId::new_random(),
        WorkspaceId::parse(ws).unwrap(),
        provider,
        format!("{provider} account"),
        now(),
    )
}

async fn connected<S: Store>(store: &S, ws: &str, next_sync: DateTime<Utc>) -> Integration {
    let mut i = integration(ws, kpi_providers::ga4::ID);
    i.transition(IntegrationStatus::Connected, now()).unwrap();
    i.next_sync_at = Some(next_sync);
    store.create_integration(&scope(ws), &i).await.unwrap()
}

fn job_for(i: &Integration) -> SyncJob {
    SyncJob::new(
        JobId::new_time_ordered(),
        i.workspace.clone(),
        i.id,
        i.provider,
        JobTrigger::Schedule,
        None,
        now(),
    )
}

/// Follows cursors until the end, checking no page is larger than asked.
async fn collect_pages<T, F, Fut>(limit: u32, mut fetch: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = kpi_core::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let mut request = PageRequest::first(limit);
    for _ in 0..1000 {
        let page = fetch(request.clone()).await.unwrap();
        assert!(page.items.len() <= limit as usize, "page larger than limit");
        all.extend(page.items);
        match page.next {
            Some(cursor) => request = PageRequest::after(limit, cursor),
            None => return all,
        }
    }
    panic!("pagination did not end");
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

fn kpi(i: &Integration, metric: MetricSpec, date: NaiveDate, value: &str) -> KpiPoint {
    let currency =
        (metric.unit == kpi_core::metric::Unit::Currency).then(|| Currency::parse("EUR").unwrap());
    KpiPoint::new(
        i.workspace.clone(),
        i.id,
        metric,
        date,
        Decimal::from_str(value).unwrap(),
        currency,
    )
    .unwrap()
}

/// Every case, for test files that want to name them all.
#[macro_export]
macro_rules! all_store_cases {
    ($mac:ident, $make:path) => {
        $crate::$mac!($make;
            integration_crud_round_trip,
            other_workspace_sees_nothing,
            conditional_write_loses_to_concurrent_writer,
            pagination_across_pages,
            due_integrations_are_connected_and_due,
            job_and_integration_commit_together,
            jobs_by_status_for_operators,
            kpi_upsert_overwrites_and_queries_ranges,
            a_job_finishes_with_its_points,
            oauth_state_is_consumed_once,
            many_concurrent_consumers_one_winner,
            expiry_is_honoured_before_deletion,
            dedupe_has_one_first_under_concurrency,
            leases_are_exclusive_until_they_expire,
            email_records_and_suppressions,
            account_links_count_the_integrations_of_one_provider_account,
            workspace_settings_are_per_workspace_and_overwritten,
            alert_rules_and_their_history,
            due_reports_come_from_an_index,
            ephemeral_records_expire_and_are_taken_once,
            concurrent_changes_to_one_integration_all_land,
        );
    };
}
