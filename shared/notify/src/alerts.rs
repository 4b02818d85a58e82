//! Alert rules evaluated after a sync wrote points (not on a timer): each
//! enabled rule on one of the synced integration's metrics looks at the synced
//! days on the stored points (restated days included), and fires one email —
//! one digest for many days — clears, or stays quiet in its cooldown. Emails
//! are keyed by rule and days, and events by the same key, so a redelivered
//! sync never sends twice.

use std::sync::Arc;

use chrono::Duration;
use kpi_core::alert::{
    AlertRule, Comparison, Condition, Decision, Direction, Observation, decide, observe,
};
use kpi_core::kpi::DateRange;
use kpi_core::ports::store::{AlertDay, AlertEvent, KpiQuery};
use kpi_core::{Integration, Registry, Result, WorkspaceScope};
use url::Url;

use crate::messages::{self, Message};
use crate::notifier::settings_url;
use crate::outbox::{Delivery, Outbox};

/// Days before the synced window read as well: a 7-day window and its
/// previous period need 13 more.
const HISTORY_DAYS: i64 = 14;

pub struct AlertEvaluator {
    pub outbox: Arc<Outbox>,
    pub registry: Arc<Registry>,
    pub public_url: Url,
}

/// What an evaluation did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub rules: usize,
    pub fired: usize,
    pub cleared: usize,
    pub kpi_reads: usize,
}

fn day(o: &Observation) -> AlertDay {
    AlertDay {
        date: o.date,
        value: o.value,
        previous: o.previous,
        change_percent: o.change_percent,
    }
}

fn show(v: Option<rust_decimal::Decimal>) -> String {
    v.map(|v| v.round_dp(4).normalize().to_string())
        .unwrap_or_else(|| "no value".into())
}

fn when(days: &[Observation]) -> String {
    match (days.first(), days.last()) {
        (Some(a), Some(b)) if a.date != b.date => {
            format!("{} to {} ({} days)", a.date, b.date, days.len())
        }
        (Some(a), _) => a.date.to_string(),
        _ => String::new(),
    }
}

/// The condition as a state ("below", "above", "changed by at least"), for
/// the back-to-normal email: "is no longer below 2".
fn state_phrase(rule: &AlertRule) -> &'static str {
    match &rule.condition {
        Condition::Threshold {
            comparison: Comparison::Above,
            ..
        } => "above",
        Condition::Threshold {
            comparison: Comparison::Below,
            ..
        } => "below",
        Condition::Change { .. } => "changed by at least",
    }
}

fn comparison(rule: &AlertRule) -> (String, String) {
    match &rule.condition {
        Condition::Threshold {
            comparison,
            threshold,
        } => (
            match comparison {
                Comparison::Above => "rose above".into(),
                Comparison::Below => "fell below".into(),
            },
            threshold.normalize().to_string(),
        ),
        Condition::Change {
            percent, direction, ..
        } => (
            match direction {
                Direction::Up => "rose by at least".into(),
                Direction::Down => "fell by at least".into(),
                Direction::Either => "changed by at least".into(),
            },
            format!("{}%", percent.normalize()),
        ),
    }
}

impl AlertEvaluator {
    /// Evaluates the workspace's rules touching `integration` over `window`.
    pub async fn after_sync(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        window: DateRange,
    ) -> Result<Evaluation> {
        let store = &self.outbox.store;
        let descriptor = self.registry.descriptor(integration.provider)?;
        let rules: Vec<AlertRule> = store
            .list_alerts(scope)
            .await?
            .into_iter()
            .filter(|r| {
                r.enabled
                    && r.integration.is_none_or(|i| i == integration.id)
                    && descriptor.metrics.iter().any(|m| m.metric == r.metric)
            })
            .collect();
        let mut done = Evaluation {
            rules: rules.len(),
            ..Evaluation::default()
        };
        for rule in rules {
            let Some(spec) = descriptor
                .metrics
                .iter()
                .find(|m| m.metric == rule.metric)
                .copied()
            else {
                continue;
            };
            let mut points = Vec::new();
            for metric in spec.inputs() {
                done.kpi_reads += 1;
                points.extend(
                    store
                        .query_kpis(
                            scope,
                            &KpiQuery {
                                metric,
                                from: window.from - Duration::days(HISTORY_DAYS),
                                to: window.to,
                                integration: Some(integration.id),
                            },
                        )
                        .await?,
                );
            }
            let days: Vec<Observation> = window
                .from
                .iter_days()
                .take_while(|d| *d <= window.to)
                .map(|d| observe(&rule, &spec, &points, d))
                .collect();
            let now = self.outbox.clock.now();
            match decide(&rule, &days, now) {
                Decision::Fire(fired) => {
                    done.fired += 1;
                    self.fire(scope, integration, rule, fired).await?;
                }
                Decision::Clear(o) => {
                    done.cleared += 1;
                    self.clear(scope, integration, rule, o).await?;
                }
                Decision::Quiet | Decision::Nothing => {}
            }
        }
        Ok(done)
    }

    /// The rule's email as it would look for `integration`'s latest day,
    /// sent to `to` only.
    pub async fn test(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        rule: &AlertRule,
        to: &str,
    ) -> Result<(Delivery, String)> {
        let descriptor = self.registry.descriptor(integration.provider)?;
        let spec = descriptor
            .metrics
            .iter()
            .find(|m| m.metric == rule.metric)
            .copied()
            .ok_or_else(|| {
                kpi_core::Error::validation("metric", "not a metric of that integration")
            })?;
        let now = self.outbox.clock.now();
        let day = now.date_naive() - Duration::days(1);
        let mut points = Vec::new();
        for metric in spec.inputs() {
            points.extend(
                self.outbox
                    .store
                    .query_kpis(
                        scope,
                        &KpiQuery {
                            metric,
                            from: day - Duration::days(HISTORY_DAYS),
                            to: day,
                            integration: Some(integration.id),
                        },
                    )
                    .await?,
            );
        }
        let o = observe(rule, &spec, &points, day);
        let (comparison, threshold) = comparison(rule);
        let message = Message::KpiAlert(messages::KpiAlert {
            rule_name: format!("Test: {}", rule.name),
            metric_label: rule.metric.to_string(),
            integration_name: integration.display_name.clone(),
            comparison,
            threshold,
            value: show(o.value),
            date: o.date.to_string(),
            settings_url: settings_url(&self.public_url, &integration.workspace, integration.id),
        });
        let subject = message.render()?.subject;
        let key = format!("preview/alert/{}/{}", rule.id, now.timestamp_millis());
        let delivery = self
            .outbox
            .deliver_to_caller(scope, &message, &key, to)
            .await?;
        Ok((delivery, subject))
    }

    async fn fire(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        rule: AlertRule,
        days: Vec<Observation>,
    ) -> Result<()> {
        let (first, last) = match (days.first(), days.last()) {
            (Some(a), Some(b)) => (a.date, b.date),
            _ => return Ok(()),
        };
        let key = format!("alert/{}/{first}..{last}", rule.id);
        let (comparison, threshold) = comparison(&rule);
        let latest = days.last().map(|o| o.value).unwrap_or_default();
        let message = Message::KpiAlert(messages::KpiAlert {
            rule_name: rule.name.clone(),
            metric_label: rule.metric.to_string(),
            integration_name: integration.display_name.clone(),
            comparison,
            threshold,
            value: show(latest),
            date: when(&days),
            settings_url: settings_url(&self.public_url, &integration.workspace, integration.id),
        });
        let delivery = self.send(scope, &message, &key, &rule.recipients).await;
        self.record(
            scope,
            &rule,
            &key,
            "fired",
            days.iter().map(day).collect(),
            &delivery,
        )
        .await?;
        self.mark(scope, rule, |r| {
            r.state.firing = true;
            r.state.since = Some(r.state.since.map_or(last, |s| s.max(last)));
            r.state.last_sent_at = Some(self.outbox.clock.now());
        })
        .await
    }

    async fn clear(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        rule: AlertRule,
        o: Observation,
    ) -> Result<()> {
        let key = format!("alert/{}/cleared/{}", rule.id, o.date);
        let delivery = if rule.notify_recovery {
            let (_, threshold) = comparison(&rule);
            let message = Message::KpiBackToNormal(messages::KpiAlert {
                rule_name: rule.name.clone(),
                metric_label: rule.metric.to_string(),
                integration_name: integration.display_name.clone(),
                comparison: state_phrase(&rule).to_owned(),
                threshold,
                value: show(o.value),
                date: o.date.to_string(),
                settings_url: settings_url(
                    &self.public_url,
                    &integration.workspace,
                    integration.id,
                ),
            });
            self.send(scope, &message, &key, &rule.recipients).await
        } else {
            Ok(Delivery::NotSent(
                "the rule sends no back-to-normal email".into(),
            ))
        };
        self.record(scope, &rule, &key, "cleared", vec![day(&o)], &delivery)
            .await?;
        self.mark(scope, rule, |r| {
            r.state.firing = false;
            r.state.since = None;
        })
        .await
    }

    /// Alerts go out from the workspace's own Resend account only.
    async fn send(
        &self,
        scope: &WorkspaceScope,
        message: &Message,
        key: &str,
        recipients: &[String],
    ) -> Result<Delivery> {
        self.outbox
            .deliver(scope, message, key, recipients, false)
            .await
    }

    async fn record(
        &self,
        scope: &WorkspaceScope,
        rule: &AlertRule,
        key: &str,
        kind: &str,
        days: Vec<AlertDay>,
        delivery: &Result<Delivery>,
    ) -> Result<()> {
        let (emailed, reason) = match delivery {
            Ok(Delivery::Sent(_)) => (true, None),
            Ok(Delivery::NotSent(why)) => (false, Some(why.clone())),
            Err(e) => (
                false,
                Some(format!("the email provider refused it: {}", e.message())),
            ),
        };
        self.outbox
            .store
            .add_alert_event(
                scope,
                &AlertEvent {
                    id: key.to_owned(),
                    rule: rule.id,
                    workspace: rule.workspace.clone(),
                    kind: kind.to_owned(),
                    days,
                    emailed,
                    reason,
                    at: self.outbox.clock.now(),
                },
            )
            .await?;
        Ok(())
    }

    /// Read-modify-write of the rule's state (the one policy of
    /// `kpi_sync::cas`); a rule deleted meanwhile needs none.
    async fn mark(
        &self,
        scope: &WorkspaceScope,
        rule: AlertRule,
        change: impl Fn(&mut AlertRule),
    ) -> Result<()> {
        match kpi_sync::cas::modify_alert(
            &*self.outbox.store,
            &*self.outbox.clock,
            scope,
            rule.id,
            |r| {
                change(r);
                Ok(())
            },
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl kpi_sync::SyncObserver for AlertEvaluator {
    async fn synced(&self, scope: &WorkspaceScope, integration: &Integration, window: DateRange) {
        match self.after_sync(scope, integration, window).await {
            Ok(e) if e.rules > 0 => {
                tracing::info!(integration = %integration.id, rules = e.rules, fired = e.fired, cleared = e.cleared, "alert rules evaluated")
            }
            Ok(_) => {}
            // An evaluation that fails is logged; the sync it follows stands.
            Err(e) => {
                tracing::warn!(integration = %integration.id, error = %e.log_chain(), "alert rules not evaluated")
            }
        }
    }
}
