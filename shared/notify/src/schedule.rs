//! When a workspace's report goes out: daily, weekly on a weekday, or monthly
//! on the 1st, at a local hour in its IANA time zone — the same wall-clock hour
//! on both sides of a daylight-saving change — and which days it covers (the
//! last complete period before the send, in that zone).

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use kpi_core::kpi::DateRange;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Daily,
    Weekly,
    Monthly,
}

/// The first instant at or after `local` that exists in `tz` (a time inside
/// a spring-forward gap moves to the gap's end; an ambiguous one takes the
/// earlier).
fn instant(tz: Tz, local: chrono::NaiveDateTime) -> DateTime<Utc> {
    let mut t = local;
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&t).earliest() {
            return at.with_timezone(&Utc);
        }
        t += Duration::minutes(30);
    }
    Utc.from_utc_datetime(&local)
}

/// Whether `date` is a send day.
fn sends_on(frequency: Frequency, weekday: Weekday, date: NaiveDate) -> bool {
    match frequency {
        Frequency::Daily => true,
        Frequency::Weekly => date.weekday() == weekday,
        Frequency::Monthly => date.day() == 1,
    }
}

/// The next send strictly after `after`.
pub fn next_run(
    frequency: Frequency,
    weekday: Weekday,
    hour: u32,
    tz: Tz,
    after: DateTime<Utc>,
) -> DateTime<Utc> {
    let at = NaiveTime::from_hms_opt(hour.min(23), 0, 0).unwrap_or_default();
    let mut date = after.with_timezone(&tz).date_naive();
    // At most a month and a bit of days to look at.
    for _ in 0..40 {
        if sends_on(frequency, weekday, date) {
            let run = instant(tz, date.and_time(at));
            if run > after {
                return run;
            }
        }
        date += Duration::days(1);
    }
    after + Duration::days(1)
}

/// The days a report sent at `run` covers, and the period before them.
pub fn periods(frequency: Frequency, tz: Tz, run: DateTime<Utc>) -> (DateRange, DateRange) {
    let today = run.with_timezone(&tz).date_naive();
    let yesterday = today - Duration::days(1);
    match frequency {
        Frequency::Daily => (
            DateRange {
                from: yesterday,
                to: yesterday,
            },
            DateRange {
                from: yesterday - Duration::days(1),
                to: yesterday - Duration::days(1),
            },
        ),
        Frequency::Weekly => (
            DateRange {
                from: today - Duration::days(7),
                to: yesterday,
            },
            DateRange {
                from: today - Duration::days(14),
                to: today - Duration::days(8),
            },
        ),
        Frequency::Monthly => {
            let this_month = today.with_day(1).unwrap_or(today);
            let last_month = this_month
                .checked_sub_months(Months::new(1))
                .unwrap_or(this_month);
            let before = last_month
                .checked_sub_months(Months::new(1))
                .unwrap_or(last_month);
            (
                DateRange {
                    from: last_month,
                    to: this_month - Duration::days(1),
                },
                DateRange {
                    from: before,
                    to: last_month - Duration::days(1),
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn weekly_at_eight_local_on_both_sides_of_a_dst_change() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // Clocks go forward on Sunday 29 March 2026.
        let first = next_run(
            Frequency::Weekly,
            Weekday::Mon,
            8,
            berlin,
            utc("2026-03-20T12:00:00Z"),
        );
        assert_eq!(first, utc("2026-03-23T07:00:00Z"), "08:00 CET");
        let second = next_run(Frequency::Weekly, Weekday::Mon, 8, berlin, first);
        assert_eq!(second, utc("2026-03-30T06:00:00Z"), "08:00 CEST");
        // And back in October (25 October 2026).
        let autumn = next_run(
            Frequency::Weekly,
            Weekday::Mon,
            8,
            berlin,
            utc("2026-10-20T00:00:00Z"),
        );
        assert_eq!(autumn, utc("2026-10-26T07:00:00Z"));
    }

    #[test]
    fn a_time_in_the_spring_gap_moves_past_it() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let run = next_run(
            Frequency::Daily,
            Weekday::Mon,
            2,
            berlin,
            utc("2026-03-28T12:00:00Z"),
        );
        assert_eq!(
            run,
            utc("2026-03-29T01:00:00Z"),
            "02:00 does not exist; 03:00 CEST"
        );
    }

    #[test]
    fn periods_are_the_last_complete_ones_in_local_days() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // Monday 08:00 in Tokyo is Sunday 23:00 UTC.
        let run = utc("2026-03-22T23:00:00Z");
        let (week, before) = periods(Frequency::Weekly, tokyo, run);
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        assert_eq!((week.from, week.to), (d(3, 16), d(3, 22)));
        assert_eq!((before.from, before.to), (d(3, 9), d(3, 15)));
        let (month, previous) = periods(Frequency::Monthly, tokyo, utc("2026-02-28T23:00:00Z"));
        assert_eq!((month.from, month.to), (d(2, 1), d(2, 28)));
        assert_eq!((previous.from, previous.to), (d(1, 1), d(1, 31)));
        let (day, prior) = periods(Frequency::Daily, tokyo, run);
        assert_eq!((day.from, prior.from), (d(3, 22), d(3, 21)));
    }
}
