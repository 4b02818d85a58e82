//! Reading daily account insights. A short window is one paged call; a long
//! one — or one Meta refuses as too much data or too slow — runs as an async
//! report run (create, poll, read the result pages). A run that fails or
//! stalls is tried again as two halves, down to single days.

use std::time::Duration;

use kpi_core::kpi::DateRange;
use kpi_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::graph::{INSIGHT_FIELDS, InsightRow, MetaClient, Paged, api_error};
use super::usage::{self, Usage};
use crate::http::{Reply, read, send_error};

const NAME: &str = "Meta";

/// How insights are fetched: when to go async, page size, polling.
#[derive(Debug, Clone, Copy)]
pub struct ReportPolicy {
    /// Windows longer than this run as async report runs. About a quarter:
    /// a 90-day backfill stays one plain call, longer ones do not risk
    /// Meta's request timeout.
    pub async_above_days: i64,
    /// Rows asked for per page.
    pub page_size: u32,
    /// First wait between polls of a report run; doubles up to `max_poll`.
    pub first_poll: Duration,
    pub max_poll: Duration,
    /// A run whose completion has not moved for this long is given up.
    pub stall_after: Duration,
}

impl Default for ReportPolicy {
    fn default() -> Self {
        Self {
            async_above_days: 93,
            page_size: 100,
            first_poll: Duration::from_millis(500),
            max_poll: Duration::from_secs(8),
            stall_after: Duration::from_secs(90),
        }
    }
}

/// Rows read, the calls it took and the highest usage Meta reported.
#[derive(Debug, Default)]
pub struct Fetched {
    pub rows: Vec<InsightRow>,
    pub calls: u32,
    pub usage: Usage,
    /// Windows that went through an async report run.
    pub report_runs: u32,
}

impl Fetched {
    fn note(&mut self, reply: &Reply) {
        let usage = usage::read(&reply.headers);
        if usage.highest_pct >= self.usage.highest_pct {
            self.usage = usage;
        }
    }
}

/// Meta's answers that mean "ask for less or ask asynchronously": the
/// request timeout (100/1504018, 2/1504038) and "reduce the amount of data" (1).
fn too_much(reply: &Reply) -> bool {
    #[derive(Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: i64,
        #[serde(default)]
        error_subcode: Option<i64>,
        #[serde(default)]
        message: String,
    }
    let Ok(Body { error }) = serde_json::from_slice::<Body>(&reply.body) else {
        return false;
    };
    matches!(
        (error.code, error.error_subcode),
        (100, Some(1_504_018)) | (2, Some(1_504_038))
    ) || (error.code == 1 && error.message.contains("reduce the amount of data"))
}

/// Before the next call: stop when nearly throttled (the rest is left to a
/// later attempt, after Meta's wait), slow down when usage is high.
async fn pace(reply: &Reply) -> Result<()> {
    let usage = usage::read(&reply.headers);
    if usage.highest_pct >= usage::STOP_PCT {
        return Err(Error::rate_limited(
            Some(usage.wait()),
            format!(
                "Meta rate limits are {:.0}% used; waiting before going on",
                usage.highest_pct
            ),
        ));
    }
    tokio::time::sleep(usage.pause()).await;
    Ok(())
}

/// The `AdReportRun` fields a poll reads.
#[derive(Debug, Deserialize)]
struct ReportRun {
    #[serde(default)]
    async_status: String,
    #[serde(default)]
    async_percent_completion: f64,
}

enum RunEnd {
    Read,
    /// Failed, skipped or stalled: the window is tried again in halves.
    GaveUp(String),
}

/// The two halves of a window of at least two days.
fn halves(window: DateRange) -> Option<(DateRange, DateRange)> {
    let days = window.days();
    if days < 2 {
        return None;
    }
    let first_to = window.from + chrono::Duration::days(days / 2 - 1);
    Some((
        DateRange {
            from: window.from,
            to: first_to,
        },
        DateRange {
            from: first_to + chrono::Duration::days(1),
            to: window.to,
        },
    ))
}

impl MetaClient {
    /// Daily account-level insights over `window`, every page.
    pub async fn insights(
        &self,
        token: &SecretString,
        account: &str,
        window: DateRange,
        attribution_windows: &[&str],
    ) -> Result<Fetched> {
        let mut out = Fetched::default();
        // (window, go async) — a stack, so halves are read in date order.
        let mut pending = vec![(window, false)];
        while let Some((w, go_async)) = pending.pop() {
            if !go_async && w.days() <= self.policy.async_above_days {
                if !self
                    .read_pages(token, account, w, attribution_windows, &mut out)
                    .await?
                {
                    tracing::info!(
                        days = w.days(),
                        "Meta asks for less: an async report run instead"
                    );
                    pending.push((w, true));
                }
                continue;
            }
            out.report_runs += 1;
            match self
                .report_run(token, account, w, attribution_windows, &mut out)
                .await?
            {
                RunEnd::Read => {}
                RunEnd::GaveUp(why) => match halves(w) {
                    Some((first, second)) => {
                        tracing::info!(
                            days = w.days(),
                            why,
                            "Meta report run given up: trying halves"
                        );
                        pending.push((second, false));
                        pending.push((first, false));
                    }
                    None => {
                        return Err(Error::transient(format!(
                            "Meta could not report {}: {why}",
                            w.from
                        )));
                    }
                },
            }
        }
        Ok(out)
    }

    fn insight_params(&self, url: &mut Url, window: DateRange, attribution_windows: &[&str]) {
        let time_range =
            serde_json::json!({"since": window.from.to_string(), "until": window.to.to_string()})
                .to_string();
        let mut q = url.query_pairs_mut();
        q.append_pair("level", "account")
            .append_pair("fields", INSIGHT_FIELDS)
            .append_pair("time_increment", "1")
            .append_pair("time_range", &time_range);
        if !attribution_windows.is_empty() {
            let windows = serde_json::to_string(attribution_windows).unwrap_or_default();
            q.append_pair("action_attribution_windows", &windows);
        }
    }

    /// One plain paged read. `false` when Meta answers that the request is
    /// too much (nothing of the window is kept then).
    async fn read_pages(
        &self,
        token: &SecretString,
        account: &str,
        window: DateRange,
        attribution_windows: &[&str],
        out: &mut Fetched,
    ) -> Result<bool> {
        let mut url = self.endpoint(&[account, "insights"])?;
        self.insight_params(&mut url, window, attribution_windows);
        let mut rows = Vec::new();
        match self.follow_pages(token, url, &mut rows, out).await? {
            Some(reply) if too_much(&reply) => Ok(false),
            Some(reply) => Err(api_error(&reply)),
            None => {
                out.rows.extend(rows);
                Ok(true)
            }
        }
    }

    /// Reads `url` and its following pages into `rows`, by the `after` cursor
    /// (never by the `next` URL, which carries the token). Returns the first
    /// error reply, if any.
    async fn follow_pages(
        &self,
        token: &SecretString,
        url: Url,
        rows: &mut Vec<InsightRow>,
        out: &mut Fetched,
    ) -> Result<Option<Reply>> {
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut page_url = url.clone();
            page_url
                .query_pairs_mut()
                .append_pair("limit", &self.policy.page_size.to_string());
            if let Some(a) = &after {
                page_url.query_pairs_mut().append_pair("after", a);
            }
            out.calls += 1;
            pages += 1;
            let reply = self.call(self.http.get(page_url), token).await?;
            out.note(&reply);
            if !reply.is_success() {
                return Ok(Some(reply));
            }
            let mut page: Paged<InsightRow> = reply.json(NAME)?;
            rows.append(&mut page.data);
            match page.next_cursor() {
                Some(a) if pages < 1_000 => after = Some(a),
                _ => return Ok(None),
            }
            pace(&reply).await?;
        }
    }

    async fn call(&self, request: reqwest::RequestBuilder, token: &SecretString) -> Result<Reply> {
        let resp = request
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        read(NAME, resp).await
    }

    /// Create → poll until done → read the result pages.
    async fn report_run(
        &self,
        token: &SecretString,
        account: &str,
        window: DateRange,
        attribution_windows: &[&str],
        out: &mut Fetched,
    ) -> Result<RunEnd> {
        let mut url = self.endpoint(&[account, "insights"])?;
        self.insight_params(&mut url, window, attribution_windows);
        out.calls += 1;
        let reply = self.call(self.http.post(url), token).await?;
        out.note(&reply);
        if !reply.is_success() {
            return Err(api_error(&reply));
        }
        #[derive(Deserialize)]
        struct Created {
            report_run_id: String,
        }
        let run = reply.json::<Created>(NAME)?.report_run_id;
        pace(&reply).await?;
        if run.is_empty() || !run.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::transient(
                "Meta sent a report run id we could not read",
            ));
        }
        let mut wait = self.policy.first_poll;
        let mut last_progress = (f64::MIN, tokio::time::Instant::now());
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.policy.max_poll);
            let mut poll = self.endpoint(&[&run])?;
            poll.query_pairs_mut()
                .append_pair("fields", "async_status,async_percent_completion");
            out.calls += 1;
            let reply = self.call(self.http.get(poll), token).await?;
            out.note(&reply);
            if !reply.is_success() {
                return Err(api_error(&reply));
            }
            let status: ReportRun = reply.json(NAME)?;
            match status.async_status.as_str() {
                "Job Completed" if status.async_percent_completion >= 100.0 => break,
                "Job Failed" | "Job Skipped" => {
                    return Ok(RunEnd::GaveUp(status.async_status.to_lowercase()));
                }
                _ => pace(&reply).await?,
            }
            if status.async_percent_completion > last_progress.0 {
                last_progress = (status.async_percent_completion, tokio::time::Instant::now());
            } else if last_progress.1.elapsed() >= self.policy.stall_after {
                return Ok(RunEnd::GaveUp(format!(
                    "stalled at {:.0}%",
                    status.async_percent_completion
                )));
            }
        }
        let mut rows = Vec::new();
        match self
            .follow_pages(token, self.endpoint(&[&run, "insights"])?, &mut rows, out)
            .await?
        {
            Some(reply) => Err(api_error(&reply)),
            None => {
                out.rows.extend(rows);
                Ok(RunEnd::Read)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, day).unwrap()
    }

    #[test]
    fn halves_cover_the_window_without_overlap() {
        let (a, b) = halves(DateRange {
            from: d(1),
            to: d(31),
        })
        .unwrap();
        assert_eq!((a.from, a.to, b.from, b.to), (d(1), d(15), d(16), d(31)));
        let (a, b) = halves(DateRange {
            from: d(1),
            to: d(2),
        })
        .unwrap();
        assert_eq!((a.days(), b.days()), (1, 1));
        assert!(
            halves(DateRange {
                from: d(3),
                to: d(3)
            })
            .is_none()
        );
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            retry_after: None,
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn meta_timeouts_and_too_much_data_go_async() {
        for body in [
            r#"{"error":{"message":"Your request timed out. Try a smaller date range, fetch less data, or use async jobs.","code":100,"error_subcode":1504018}}"#,
            r#"{"error":{"message":"Service temporarily unavailable","code":2,"error_subcode":1504038}}"#,
            r#"{"error":{"message":"Please reduce the amount of data you're asking for, then retry your request","code":1}}"#,
        ] {
            assert!(too_much(&reply(500, body)), "{body}");
        }
        assert!(!too_much(&reply(
            400,
            r#"{"error":{"message":"(#2) Service temporarily unavailable","code":2}}"#
        )));
        assert!(!too_much(&reply(502, "<html>bad gateway</html>")));
    }
}
