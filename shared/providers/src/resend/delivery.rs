//! Resend's KPIs: daily sends of one Resend integration and what became of
//! them, counted from the sends recorded here (each with the newest status
//! Resend's webhooks reported). Sends an hour old still without an outcome
//! are looked up with `GET /emails/{id}`, for events whose webhook never came.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate, Utc};
use kpi_core::kpi::DateRange;
use kpi_core::ports::provider::SentEmails;
use kpi_core::ports::store::EmailRecord;
use kpi_core::{Error, Integration, KpiPoint, Result};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::METRICS;
use super::client::{ResendClient, api_error};
use crate::http::{read, send_error};

/// Most lookups one sync makes (the rest wait for the next sync).
pub const MAX_LOOKUPS: usize = 50;

/// Counts of one day.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub sent: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub complained: u64,
}

/// Whether a status means the email reached the mailbox (a complaint, an
/// open or a click comes after delivery).
fn reached(status: &str) -> bool {
    matches!(status, "delivered" | "opened" | "clicked" | "complained")
}

fn undecided(status: &str) -> bool {
    matches!(status, "sent" | "queued" | "delivery_delayed" | "scheduled")
}

/// Counts per UTC day of sending.
pub fn count(emails: &[EmailRecord]) -> BTreeMap<NaiveDate, Day> {
    let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    for e in emails {
        let day = days.entry(e.created_at.date_naive()).or_default();
        if e.status == "failed" || e.status == "canceled" {
            continue;
        }
        day.sent += 1;
        if reached(&e.status) {
            day.delivered += 1;
        }
        match e.status.as_str() {
            "bounced" => day.bounced += 1,
            "complained" => day.complained += 1,
            _ => {}
        }
    }
    days
}

/// Every day of `window` as the five `resend.*` points; a day without sends
/// has zeros and no delivery rate.
pub fn points(
    integration: &Integration,
    window: &DateRange,
    days: &BTreeMap<NaiveDate, Day>,
) -> Result<Vec<KpiPoint>> {
    let spec = |name: &str| {
        METRICS
            .iter()
            .find(|m| m.metric.as_str() == name)
            .copied()
            .ok_or_else(|| Error::internal(format!("no Resend metric {name}")))
    };
    let mut out = Vec::new();
    for date in window.from.iter_days().take_while(|d| *d <= window.to) {
        let d = days.get(&date).copied().unwrap_or_default();
        let mut push = |name: &str, value: Decimal| -> Result<()> {
            out.push(KpiPoint::new(
                integration.workspace.clone(),
                integration.id,
                spec(name)?,
                date,
                value,
                None,
            )?);
            Ok(())
        };
        push("resend.sent", d.sent.into())?;
        push("resend.delivered", d.delivered.into())?;
        push("resend.bounced", d.bounced.into())?;
        push("resend.complained", d.complained.into())?;
        if d.sent > 0 {
            push(
                "resend.delivery_rate",
                Decimal::from(d.delivered) / Decimal::from(d.sent),
            )?;
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct EmailObject {
    #[serde(default)]
    last_event: Option<String>,
}

impl ResendClient {
    /// `GET /emails/{id}`: the email's last event.
    pub async fn last_event(&self, key: &SecretString, id: &str) -> Result<Option<String>> {
        self.gate_wait(key).await;
        let resp = self
            .http
            .get(self.url(&format!("emails/{id}"))?)
            .bearer_auth(key.expose_secret())
            .send()
            .await
            .map_err(|e| send_error("Resend", e))?;
        let reply = read("Resend", resp).await?;
        self.gate_note(key, &reply);
        if reply.status == 404 {
            return Ok(None);
        }
        if !reply.is_success() {
            return Err(api_error(&reply));
        }
        Ok(reply.json::<EmailObject>("Resend")?.last_event)
    }
}

/// The window's sends, reconciled, counted into points. Returns the points
/// and the provider calls made.
pub async fn sync(
    client: &ResendClient,
    key: &SecretString,
    integration: &Integration,
    window: &DateRange,
    records: &dyn SentEmails,
) -> Result<(Vec<KpiPoint>, u32)> {
    let from = window
        .from
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let to = (window.to + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let mut emails = records.sent_by(integration, from, to).await?;
    let settled_after = Utc::now() - Duration::hours(1);
    let mut calls = 0;
    for e in emails
        .iter_mut()
        .filter(|e| {
            undecided(&e.status) && e.created_at < settled_after && e.provider_message_id.is_some()
        })
        .take(MAX_LOOKUPS)
    {
        let id = e.provider_message_id.clone().unwrap_or_default();
        calls += 1;
        if let Some(event) = client.last_event(key, &id).await? {
            e.status = event;
        }
    }
    Ok((points(integration, window, &count(&emails))?, calls))
}
