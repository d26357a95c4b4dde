//! Adding a [`Span`] to an instant, and the end of an impact period.
//!
//! # What `start + span` means ([`add`])
//!
//! All calendar arithmetic happens on the wall clock of the given time zone
//! (Asia/Shanghai by default in clearflow); local times that do not exist or
//! exist twice resolve as described in [`crate::local`] (gap: the first valid
//! instant after it; overlap: the earliest).
//!
//! - `s`, `m`, `h`: exact elapsed time. `1h` across a DST change is 3600 seconds,
//!   whatever the clocks show.
//! - `d`, `w`: calendar days (`w` = 7 days) on the local date, keeping the local
//!   time of day. `1d` across a spring-forward change is 23 elapsed hours.
//! - `mo`, `y`: calendar months (`y` = 12 months), keeping the local time of day
//!   and clamping to the month's last day: 2025-01-31 + `1mo` = 2025-02-28,
//!   2024-02-29 + `1y` = 2025-02-28.
//! - `wd`: working days on a [`Calendar`]. The start's own local date is never
//!   counted.
//!   - `+N wd`: step forward from the start's local date, counting working days;
//!     the deadline is the **end** of the Nth working day: [`Deadline::at`] is the
//!     last instant of that local date ([`crate::local::end_of_day`], normally
//!     23:59:59.999999999), because "within 15 working days" means by the end of
//!     that day. `local::start_of_day(date + 1)` is the exclusive form.
//!   - `-N wd`: step backward, and the result is the **start** (local 00:00) of
//!     the Nth working day before the start's date. A reminder `-2wd` before a
//!     deadline at the end of Thursday fires at the start of Tuesday, leaving two
//!     full working days (Tuesday and Wednesday) plus the due day itself.
//!   - `0wd` returns the start unchanged (as does any zero span), but still
//!     needs a calendar.
//!   - Without a calendar `wd` is [`DeadlineError::NoCalendar`]. When counting
//!     reaches a year the calendar does not cover, the count continues with
//!     Saturdays and Sundays as the only days off and the result is marked
//!     [`Deadline::provisional`]: recompute it when that year's file arrives.
//!
//! # Impact periods ([`period_end`])
//!
//! Periods such as "one year from 2024-03-01" are whole dates. With the default
//! [`PeriodEndRule::DayBeforeAnniversary`] the last day of the period is the day
//! before the anniversary (2024-03-01 + `1y` ends with 2025-02-28); with
//! [`PeriodEndRule::Anniversary`] it is the anniversary itself (2025-03-01).
//! Where the anniversary month has no corresponding day (a period starting on
//! the 31st, or on 29 February), both rules end the period with that month's
//! last day, so the period never comes out shorter than its span.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, Utc, Weekday};
use chrono_tz::Tz;

use crate::calendar::Calendar;
use crate::duration::{Span, Unit};
use crate::local;

/// Working-day counts beyond this (about 380 years) are refused as out of range.
pub const MAX_WORKING_DAYS: i64 = 100_000;

/// The result of [`add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The instant: for `+N wd` the last instant of the due local date, for
    /// `-N wd` the first instant of the reminder date, otherwise the exact sum.
    pub at: DateTime<Utc>,
    /// True when working days were counted through a year the calendar does not
    /// cover (weekends only were assumed there).
    pub provisional: bool,
}

/// Why a deadline cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    /// A `wd` span was given without a working-day calendar.
    #[error("`{span}` counts working days but no working-day calendar was given")]
    NoCalendar {
        /// The span.
        span: Span,
    },
    /// The result does not fit in the supported range of dates.
    #[error("`{span}` from {start} is out of range")]
    OutOfRange {
        /// The span.
        span: Span,
        /// The instant it was added to.
        start: DateTime<Utc>,
    },
}

/// Adds `span` to `start` in time zone `tz`; `calendar` is needed for `wd` (see the module docs).
pub fn add(
    start: DateTime<Utc>,
    span: &Span,
    tz: Tz,
    calendar: Option<&Calendar>,
) -> Result<Deadline, DeadlineError> {
    let out_of_range = || DeadlineError::OutOfRange { span: *span, start };
    let exact = |at: Option<DateTime<Utc>>| {
        at.map(|at| Deadline {
            at,
            provisional: false,
        })
        .ok_or_else(out_of_range)
    };
    let amount = span.amount();
    match span.unit() {
        Unit::Seconds | Unit::Minutes | Unit::Hours => {
            exact(span.exact().and_then(|d| start.checked_add_signed(d)))
        }
        Unit::Days => exact(shift_days(start, tz, amount)),
        Unit::Weeks => exact(amount.checked_mul(7).and_then(|d| shift_days(start, tz, d))),
        Unit::Months => exact(shift_months(start, tz, amount)),
        Unit::Years => exact(
            amount
                .checked_mul(12)
                .and_then(|m| shift_months(start, tz, m)),
        ),
        Unit::WorkingDays => {
            let calendar = calendar.ok_or(DeadlineError::NoCalendar { span: *span })?;
            if amount == 0 {
                return exact(Some(start));
            }
            if amount.unsigned_abs() > MAX_WORKING_DAYS.unsigned_abs() {
                return Err(out_of_range());
            }
            let from = local::wall_clock(tz, start).date();
            let (date, provisional) =
                count_working_days(from, amount, calendar).ok_or_else(out_of_range)?;
            let at = if amount > 0 {
                local::end_of_day(date, tz)
            } else {
                local::start_of_day(date, tz)
            };
            at.map(|at| Deadline { at, provisional })
                .ok_or_else(out_of_range)
        }
    }
}

/// The local date `n` working days after (`n < 0`: before) `from`, not counting
/// `from` itself, and whether an uncovered year was crossed.
fn count_working_days(from: NaiveDate, n: i64, calendar: &Calendar) -> Option<(NaiveDate, bool)> {
    let mut date = from;
    let mut provisional = false;
    let mut left = n.unsigned_abs();
    while left > 0 {
        date = if n > 0 {
            date.succ_opt()?
        } else {
            date.pred_opt()?
        };
        let working = calendar.is_working_day(date).unwrap_or_else(|| {
            provisional = true;
            !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
        });
        if working {
            left -= 1;
        }
    }
    Some((date, provisional))
}

fn shift_days(start: DateTime<Utc>, tz: Tz, days: i64) -> Option<DateTime<Utc>> {
    let wall = local::wall_clock(tz, start);
    let magnitude = Days::new(days.unsigned_abs());
    let shifted = if days >= 0 {
        wall.checked_add_days(magnitude)
    } else {
        wall.checked_sub_days(magnitude)
    }?;
    local::resolve(tz, shifted)
}

fn shift_months(start: DateTime<Utc>, tz: Tz, months: i64) -> Option<DateTime<Utc>> {
    let wall: NaiveDateTime = local::wall_clock(tz, start);
    let magnitude = Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    let shifted = if months >= 0 {
        wall.checked_add_months(magnitude)
    } else {
        wall.checked_sub_months(magnitude)
    }?;
    local::resolve(tz, shifted)
}

/// How the last day of an impact period is derived from its anniversary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PeriodEndRule {
    /// The period ends with the day before the anniversary (2024-03-01 + `1y` → 2025-02-28).
    #[default]
    DayBeforeAnniversary,
    /// The period ends with the anniversary (2024-03-01 + `1y` → 2025-03-01).
    Anniversary,
}

/// Why a period end cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// Periods are whole dates: only `d`, `w`, `mo` and `y` make sense.
    #[error("impact period `{span}` must be in d, w, mo or y")]
    NotADateUnit {
        /// The span.
        span: Span,
    },
    /// A period must be longer than zero.
    #[error("impact period `{span}` must be positive")]
    NotPositive {
        /// The span.
        span: Span,
    },
    /// The end does not fit in the supported range of dates.
    #[error("impact period `{span}` from {start} is out of range")]
    OutOfRange {
        /// The span.
        span: Span,
        /// The first day of the period.
        start: NaiveDate,
    },
}

/// The last day of a period of `span` starting on (and including) `start`.
///
/// When the anniversary has no corresponding day (2025-01-31 + `1mo`,
/// 2024-02-29 + `1y`), the period ends with the last day of that month under
/// both rules: 2025-02-28. Otherwise the rule decides between the anniversary
/// and the day before it.
pub fn period_end(
    start: NaiveDate,
    span: &Span,
    rule: PeriodEndRule,
) -> Result<NaiveDate, PeriodError> {
    let amount = span.amount();
    if amount <= 0 {
        return Err(PeriodError::NotPositive { span: *span });
    }
    let out_of_range = || PeriodError::OutOfRange { span: *span, start };
    let months = |m: i64| {
        u32::try_from(m)
            .ok()
            .and_then(|m| start.checked_add_months(Months::new(m)))
    };
    let days = |d: i64| {
        u64::try_from(d)
            .ok()
            .and_then(|d| start.checked_add_days(Days::new(d)))
    };
    let clamped_months = |m: Option<i64>| {
        let anniversary = m.and_then(months)?;
        // No corresponding day (Jan 31 + 1mo): the anniversary is clamped to the
        // month's last day, and that day also ends the period under either rule.
        let clamped = anniversary.day() != start.day();
        Some((anniversary, clamped))
    };
    let (anniversary, clamped) = match span.unit() {
        Unit::Days => days(amount).map(|d| (d, false)),
        Unit::Weeks => amount.checked_mul(7).and_then(days).map(|d| (d, false)),
        Unit::Months => clamped_months(Some(amount)),
        Unit::Years => clamped_months(amount.checked_mul(12)),
        Unit::Seconds | Unit::Minutes | Unit::Hours | Unit::WorkingDays => {
            return Err(PeriodError::NotADateUnit { span: *span });
        }
    }
    .ok_or_else(out_of_range)?;
    match rule {
        PeriodEndRule::DayBeforeAnniversary if !clamped => {
            anniversary.pred_opt().ok_or_else(out_of_range)
        }
        _ => Ok(anniversary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static CN: LazyLock<Calendar> = LazyLock::new(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/calendars");
        crate::calendar::load_dir(&dir)
            .unwrap()
            .get("cn-mainland")
            .unwrap()
            .clone()
    });

    /// Adds `span` to `start` (RFC 3339) in `tz` on the cn-mainland calendar and
    /// compares with `expect`: an RFC 3339 instant, suffixed ` provisional` when
    /// it should be, or an error message.
    fn check(start: &str, span: &str, tz: Tz, expect: &str) {
        let start = DateTime::parse_from_rfc3339(start).unwrap().to_utc();
        let span: Span = span.parse().unwrap();
        let got = match add(start, &span, tz, Some(&CN)) {
            Ok(d) => {
                let at = d.at.with_timezone(&tz).to_rfc3339();
                if d.provisional {
                    format!("{at} provisional")
                } else {
                    at
                }
            }
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expect, "{start} + {span} in {tz}");
    }

    const SH: Tz = chrono_tz::Asia::Shanghai;
    const END: &str = "T23:59:59.999999999+08:00";

    #[test]
    fn acceptance_national_day_2025() {
        // Received Friday 2025-09-26 10:00. Working days after it: 09-28 (make-up
        // Sun) 1, 09-29 2, 09-30 3, [10-01..10-08 off], 10-09 4, 10-10 5,
        // 10-11 (make-up Sat) 6, 10-13..10-17 7-11, 10-20..10-23 12-15.
        check(
            "2025-09-26T10:00:00+08:00",
            "15wd",
            SH,
            &format!("2025-10-23{END}"),
        );
        check(
            "2025-09-26T10:00:00+08:00",
            "1wd",
            SH,
            &format!("2025-09-28{END}"),
        );
        check(
            "2025-09-26T10:00:00+08:00",
            "4wd",
            SH,
            &format!("2025-10-09{END}"),
        );
        check(
            "2025-09-26T10:00:00+08:00",
            "6wd",
            SH,
            &format!("2025-10-11{END}"),
        );
        // Received during the holiday: the first working day is 10-09.
        check(
            "2025-10-03T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2025-10-09{END}"),
        );
        // Late-night UTC instant that is already Saturday 09-27 in Shanghai.
        check(
            "2025-09-26T17:00:00Z",
            "1wd",
            SH,
            &format!("2025-09-28{END}"),
        );
    }

    #[test]
    fn national_day_2024() {
        // Friday 2024-09-27: 09-29 (Sun, make-up) 1, 09-30 2, [10-01..10-07 off],
        // 10-08 3, 10-09 4, 10-10 5, 10-11 6, 10-12 (Sat, make-up) 7, 10-14 8.
        check(
            "2024-09-27T16:00:00+08:00",
            "2wd",
            SH,
            &format!("2024-09-30{END}"),
        );
        check(
            "2024-09-27T16:00:00+08:00",
            "3wd",
            SH,
            &format!("2024-10-08{END}"),
        );
        check(
            "2024-09-27T16:00:00+08:00",
            "7wd",
            SH,
            &format!("2024-10-12{END}"),
        );
        check(
            "2024-09-27T16:00:00+08:00",
            "8wd",
            SH,
            &format!("2024-10-14{END}"),
        );
        // Mid-Autumn 2024: Sat 09-14 works, 09-15..09-17 off.
        check(
            "2024-09-13T12:00:00+08:00",
            "1wd",
            SH,
            &format!("2024-09-14{END}"),
        );
        check(
            "2024-09-13T12:00:00+08:00",
            "2wd",
            SH,
            &format!("2024-09-18{END}"),
        );
    }

    #[test]
    fn spring_festival() {
        // 2024: Sun 02-04 works; 02-10..02-17 off; Sun 02-18 works.
        check(
            "2024-02-02T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2024-02-04{END}"),
        );
        check(
            "2024-02-08T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2024-02-09{END}"),
        );
        check(
            "2024-02-09T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2024-02-18{END}"),
        );
        check(
            "2024-02-09T09:00:00+08:00",
            "2wd",
            SH,
            &format!("2024-02-19{END}"),
        );
        // 2025: Sun 01-26 works; 01-28..02-04 off; Sat 02-08 works.
        check(
            "2025-01-24T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2025-01-26{END}"),
        );
        check(
            "2025-01-24T09:00:00+08:00",
            "2wd",
            SH,
            &format!("2025-01-27{END}"),
        );
        check(
            "2025-01-24T09:00:00+08:00",
            "3wd",
            SH,
            &format!("2025-02-05{END}"),
        );
        check(
            "2025-02-07T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2025-02-08{END}"),
        );
        // 2026: Sat 02-14 works; 02-15..02-23 off; Sat 02-28 works.
        check(
            "2026-02-13T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2026-02-14{END}"),
        );
        check(
            "2026-02-13T09:00:00+08:00",
            "2wd",
            SH,
            &format!("2026-02-24{END}"),
        );
        check(
            "2026-02-27T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2026-02-28{END}"),
        );
        check(
            "2026-02-27T09:00:00+08:00",
            "2wd",
            SH,
            &format!("2026-03-02{END}"),
        );
        // 2026 New Year: 01-01..01-03 off, Sun 01-04 works.
        check(
            "2025-12-31T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2026-01-04{END}"),
        );
    }

    #[test]
    fn backwards_gives_the_start_of_the_day() {
        const START: &str = "T00:00:00+08:00";
        // Due Thursday 2025-10-23: -2wd is the start of Tuesday 10-21.
        check(
            &format!("2025-10-23{END}"),
            "-2wd",
            SH,
            &format!("2025-10-21{START}"),
        );
        // Across the holiday, counting the make-up Saturday 10-11 and Sunday 09-28.
        check(
            "2025-10-13T09:00:00+08:00",
            "-1wd",
            SH,
            &format!("2025-10-11{START}"),
        );
        check(
            "2025-10-13T09:00:00+08:00",
            "-3wd",
            SH,
            &format!("2025-10-09{START}"),
        );
        check(
            "2025-10-13T09:00:00+08:00",
            "-4wd",
            SH,
            &format!("2025-09-30{START}"),
        );
        check(
            "2025-09-29T09:00:00+08:00",
            "-1wd",
            SH,
            &format!("2025-09-28{START}"),
        );
        check(
            "2025-09-29T09:00:00+08:00",
            "-2wd",
            SH,
            &format!("2025-09-26{START}"),
        );
    }

    #[test]
    fn uncovered_years_are_provisional() {
        // 2026-12-30 (Wed) + 3wd: 12-31 1 (covered), then 2027 uncovered:
        // 01-01 (Fri) 2, 01-04 (Mon) 3 — New Year 2027 is not known yet.
        check(
            "2026-12-30T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2026-12-31{END}"),
        );
        check(
            "2026-12-30T09:00:00+08:00",
            "3wd",
            SH,
            &format!("2027-01-04{END} provisional"),
        );
        // Backwards into 2023.
        check(
            "2024-01-02T09:00:00+08:00",
            "-1wd",
            SH,
            "2023-12-29T00:00:00+08:00 provisional",
        );
        // Starting in an uncovered year but not counting any uncovered day is still
        // provisional only if such a day is visited.
        check(
            "2023-12-31T09:00:00+08:00",
            "1wd",
            SH,
            &format!("2024-01-02{END}"),
        );
    }

    #[test]
    fn errors() {
        check(
            "2025-01-01T00:00:00Z",
            "100001wd",
            SH,
            "`100001wd` from 2025-01-01 00:00:00 UTC is out of range",
        );
        check(
            "2025-01-01T00:00:00Z",
            "9223372036854775807y",
            SH,
            "`9223372036854775807y` from 2025-01-01 00:00:00 UTC is out of range",
        );
        let start = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let err = add(start, &"15wd".parse().unwrap(), SH, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`15wd` counts working days but no working-day calendar was given"
        );
        assert!(add(start, &"0wd".parse().unwrap(), SH, None).is_err());
        assert_eq!(
            add(start, &"0wd".parse().unwrap(), SH, Some(&CN))
                .unwrap()
                .at,
            start
        );
    }

    #[test]
    fn calendar_units() {
        check(
            "2025-01-31T10:00:00+08:00",
            "1mo",
            SH,
            "2025-02-28T10:00:00+08:00",
        );
        check(
            "2024-01-31T10:00:00+08:00",
            "1mo",
            SH,
            "2024-02-29T10:00:00+08:00",
        );
        check(
            "2025-03-31T10:00:00+08:00",
            "-1mo",
            SH,
            "2025-02-28T10:00:00+08:00",
        );
        check(
            "2024-02-29T10:00:00+08:00",
            "1y",
            SH,
            "2025-02-28T10:00:00+08:00",
        );
        check(
            "2024-02-29T10:00:00+08:00",
            "4y",
            SH,
            "2028-02-29T10:00:00+08:00",
        );
        check(
            "2024-03-01T00:00:00+08:00",
            "18mo",
            SH,
            "2025-09-01T00:00:00+08:00",
        );
        check(
            "2025-09-26T10:00:00+08:00",
            "0d",
            SH,
            "2025-09-26T10:00:00+08:00",
        );
        check(
            "2025-09-26T10:00:00+08:00",
            "3w",
            SH,
            "2025-10-17T10:00:00+08:00",
        );
        check(
            "2025-09-26T10:00:00+08:00",
            "-5d",
            SH,
            "2025-09-21T10:00:00+08:00",
        );
        check(
            "2025-09-26T10:00:00+08:00",
            "90s",
            SH,
            "2025-09-26T10:01:30+08:00",
        );
        check(
            "2025-09-26T10:00:00+08:00",
            "30m",
            SH,
            "2025-09-26T10:30:00+08:00",
        );
    }

    #[test]
    fn dst_new_york() {
        let ny = chrono_tz::America::New_York;
        // Spring forward 2025-03-09 02:00 EST -> 03:00 EDT.
        check(
            "2025-03-08T09:00:00-05:00",
            "1d",
            ny,
            "2025-03-09T09:00:00-04:00",
        );
        check(
            "2025-03-08T09:00:00-05:00",
            "24h",
            ny,
            "2025-03-09T10:00:00-04:00",
        );
        // 02:30 does not exist on 03-09: the first valid instant after it.
        check(
            "2025-03-08T02:30:00-05:00",
            "1d",
            ny,
            "2025-03-09T03:00:00-04:00",
        );
        check(
            "2025-03-08T02:30:00-05:00",
            "2d",
            ny,
            "2025-03-10T02:30:00-04:00",
        );
        // Fall back 2025-11-02 02:00 EDT -> 01:00 EST: 01:30 is ambiguous -> EDT.
        check(
            "2025-11-01T01:30:00-04:00",
            "1d",
            ny,
            "2025-11-02T01:30:00-04:00",
        );
        check(
            "2025-11-01T09:00:00-04:00",
            "1d",
            ny,
            "2025-11-02T09:00:00-05:00",
        );
        check(
            "2025-11-01T09:00:00-04:00",
            "24h",
            ny,
            "2025-11-02T08:00:00-05:00",
        );
        check(
            "2025-11-02T01:30:00-05:00",
            "1h",
            ny,
            "2025-11-02T02:30:00-05:00",
        );
        check(
            "2025-11-02T01:30:00-04:00",
            "1h",
            ny,
            "2025-11-02T01:30:00-05:00",
        );
        check(
            "2025-10-26T09:00:00-04:00",
            "1w",
            ny,
            "2025-11-02T09:00:00-05:00",
        );
    }

    #[test]
    fn dst_berlin() {
        let berlin = chrono_tz::Europe::Berlin;
        // Spring forward 2025-03-30 02:00 CET -> 03:00 CEST.
        check(
            "2025-03-29T12:00:00+01:00",
            "1d",
            berlin,
            "2025-03-30T12:00:00+02:00",
        );
        check(
            "2025-03-29T12:00:00+01:00",
            "24h",
            berlin,
            "2025-03-30T13:00:00+02:00",
        );
        check(
            "2025-03-29T02:15:00+01:00",
            "1d",
            berlin,
            "2025-03-30T03:00:00+02:00",
        );
        // Fall back 2025-10-26 03:00 CEST -> 02:00 CET.
        check(
            "2025-10-25T12:00:00+02:00",
            "1d",
            berlin,
            "2025-10-26T12:00:00+01:00",
        );
        check(
            "2025-10-25T12:00:00+02:00",
            "24h",
            berlin,
            "2025-10-26T11:00:00+01:00",
        );
        check(
            "2025-10-25T02:30:00+02:00",
            "1d",
            berlin,
            "2025-10-26T02:30:00+02:00",
        );
        check(
            "2025-10-25T12:00:00+02:00",
            "-1mo",
            berlin,
            "2025-09-25T12:00:00+02:00",
        );
    }

    /// Computes the last day of a period and compares with `expect` (a date or an error).
    fn check_period(start: &str, span: &str, rule: PeriodEndRule, expect: &str) {
        let start: NaiveDate = start.parse().unwrap();
        let span: Span = span.parse().unwrap();
        let got = match period_end(start, &span, rule) {
            Ok(date) => date.to_string(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expect, "{start} + {span} ({rule:?})");
    }

    #[test]
    fn period_ends() {
        use PeriodEndRule::{Anniversary, DayBeforeAnniversary};
        // The DOMAIN.md acceptance example: Party warning effective 2024-03-01.
        check_period("2024-03-01", "1y", DayBeforeAnniversary, "2025-02-28");
        check_period("2024-03-01", "1y", Anniversary, "2025-03-01");
        check_period("2024-03-01", "18mo", DayBeforeAnniversary, "2025-08-31");
        check_period("2024-03-01", "5y", DayBeforeAnniversary, "2029-02-28");
        check_period("2023-03-01", "1y", DayBeforeAnniversary, "2024-02-29");
        check_period("2024-02-29", "1y", DayBeforeAnniversary, "2025-02-28");
        check_period("2024-02-29", "1y", Anniversary, "2025-02-28");
        check_period("2024-02-29", "4y", DayBeforeAnniversary, "2028-02-28");
        check_period("2025-01-31", "1mo", DayBeforeAnniversary, "2025-02-28");
        check_period("2025-01-31", "1mo", Anniversary, "2025-02-28");
        check_period("2025-01-30", "1mo", DayBeforeAnniversary, "2025-02-28");
        check_period("2025-01-28", "1mo", DayBeforeAnniversary, "2025-02-27");
        check_period("2025-03-31", "1mo", DayBeforeAnniversary, "2025-04-30");
        check_period("2025-01-01", "6mo", DayBeforeAnniversary, "2025-06-30");
        check_period("2025-01-01", "30d", DayBeforeAnniversary, "2025-01-30");
        check_period("2025-01-01", "2w", Anniversary, "2025-01-15");
        check_period(
            "2025-01-01",
            "15wd",
            DayBeforeAnniversary,
            "impact period `15wd` must be in d, w, mo or y",
        );
        check_period(
            "2025-01-01",
            "0y",
            DayBeforeAnniversary,
            "impact period `0y` must be positive",
        );
        check_period(
            "2025-01-01",
            "999999999y",
            DayBeforeAnniversary,
            "impact period `999999999y` from 2025-01-01 is out of range",
        );
    }
}
