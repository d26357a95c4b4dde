//! Turning local wall-clock times into instants, with one documented rule for DST gaps and overlaps.
//!
//! A local time can name no instant (it falls in a spring-forward gap) or two
//! (it falls in a fall-back overlap). Everywhere in this crate:
//!
//! - **gap**: the first valid instant after it, i.e. the moment the clocks jump
//!   (02:30 on a New York spring-forward day becomes 03:00 EDT);
//! - **overlap**: the earliest of the two instants (01:30 on a New York
//!   fall-back day is 01:30 EDT, not 01:30 EST).
//!
//! Both rules are monotonic: a later local time never resolves to an earlier instant.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// The instant a local wall-clock time stands for in `tz` (gap: next valid instant; overlap: earliest).
///
/// `None` only when the result is outside chrono's range.
pub fn resolve(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
        LocalResult::None => gap_end(tz, local),
    }
}

/// The first instant of the local `date` in `tz`.
pub fn start_of_day(date: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    resolve(tz, date.and_hms_opt(0, 0, 0)?)
}

/// The last instant (to the nanosecond) whose local date in `tz` is `date`: the next day's start minus 1 ns.
///
/// Usually local 23:59:59.999999999; correct also where a DST change happens at midnight.
pub fn end_of_day(date: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    let next = start_of_day(date.succ_opt()?, tz)?;
    next.checked_sub_signed(TimeDelta::nanoseconds(1))
}

/// The wall-clock time `tz` shows at `at`.
pub fn wall_clock(tz: Tz, at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&tz).naive_local()
}

/// The smallest (whole-second) instant whose wall clock is past `local`, which for a
/// local time inside a gap is the moment the clocks jump.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // UTC offsets stay within ±26 h, so two days either side bracket the answer.
    let as_utc = local.and_utc().timestamp();
    let (mut lo, mut hi) = (as_utc - 2 * 86_400, as_utc + 2 * 86_400);
    let past = |secs: i64| DateTime::from_timestamp(secs, 0).map(|t| wall_clock(tz, t) > local);
    // Invariant: wall(lo) <= local < wall(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if past(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves `local` (`YYYY-MM-DDTHH:MM:SS`) in `tz` and compares with the RFC 3339 instant `expect`.
    fn check(tz: Tz, local: &str, expect: &str) {
        let local: NaiveDateTime = local.parse().unwrap();
        let got = resolve(tz, local).unwrap();
        assert_eq!(got.to_rfc3339(), expect, "{local} in {tz}");
    }

    #[test]
    fn gaps_and_overlaps() {
        use chrono_tz::{America::New_York, Asia::Shanghai, Europe::Berlin};
        check(Shanghai, "2025-10-01T09:00:00", "2025-10-01T01:00:00+00:00");
        // Spring forward: 02:00 EST -> 03:00 EDT (07:00Z); 02:30 does not exist.
        check(New_York, "2025-03-09T02:30:00", "2025-03-09T07:00:00+00:00");
        check(New_York, "2025-03-09T01:59:59", "2025-03-09T06:59:59+00:00");
        check(New_York, "2025-03-09T03:00:00", "2025-03-09T07:00:00+00:00");
        // Fall back: 01:30 happens twice; the EDT one (05:30Z) wins.
        check(New_York, "2025-11-02T01:30:00", "2025-11-02T05:30:00+00:00");
        check(Berlin, "2025-03-30T02:30:00", "2025-03-30T01:00:00+00:00");
        check(Berlin, "2025-10-26T02:30:00", "2025-10-26T00:30:00+00:00");
    }

    #[test]
    fn day_bounds() {
        let tz = chrono_tz::Asia::Shanghai;
        let date = NaiveDate::from_ymd_opt(2025, 10, 23).unwrap();
        assert_eq!(
            end_of_day(date, tz).unwrap().to_rfc3339(),
            "2025-10-23T15:59:59.999999999+00:00"
        );
        assert_eq!(
            start_of_day(date, tz).unwrap().to_rfc3339(),
            "2025-10-22T16:00:00+00:00"
        );
        // Santiago springs forward at midnight: 2024-09-08 starts at 01:00 local.
        let santiago = chrono_tz::America::Santiago;
        let date = NaiveDate::from_ymd_opt(2024, 9, 8).unwrap();
        assert_eq!(
            start_of_day(date, santiago).unwrap().to_rfc3339(),
            "2024-09-08T04:00:00+00:00"
        );
        let eve = NaiveDate::from_ymd_opt(2024, 9, 7).unwrap();
        assert_eq!(
            end_of_day(eve, santiago).unwrap().to_rfc3339(),
            "2024-09-08T03:59:59.999999999+00:00"
        );
    }
}
