//! Cron schedules with a time zone, a catch-up policy, jitter and working-day filters.
//!
//! # Cron syntax
//!
//! The expression follows the [`cron`] crate: six or seven fields, **seconds first**,
//! and day-of-week numbered 1 = Sunday … 7 = Saturday (names `Mon`…`Sun` are clearer):
//!
//! ```text
//! sec  min  hour  day-of-month  month  day-of-week  [year]
//! 0    0    9     *             *      *                     every day at 09:00
//! 0    30   2     *             *      Mon-Fri               weekdays at 02:30
//! 0    0    8     1             1,4,7,10  *                  quarterly, 08:00 on the 1st
//! ```
//!
//! Shorthands `@yearly`, `@monthly`, `@weekly`, `@daily` and `@hourly` work too.
//! Fields are matched against the wall clock of the schedule's time zone
//! (Asia/Shanghai unless `timezone` says otherwise).
//!
//! # Filters that need a calendar
//!
//! `working_days_only` keeps fires on working days; `nth_working_day_of_month = N`
//! keeps fires on the Nth working day of their month. The monthly joint review is
//! `cron = "0 0 9 * * *"` with `nth_working_day_of_month = 1`: 09:00 on the first
//! working day of every month. For days the calendar does not cover — or when no
//! calendar is passed at all — Monday to Friday count as working days, so a
//! schedule keeps firing rather than silently stopping; the daemon should check
//! [`Schedule::needs_calendar`] when loading and refuse a missing calendar.
//!
//! # DST
//!
//! Each wall-clock time that matches fires **once**, at the instant given by
//! [`crate::local::resolve`]: a time inside a spring-forward gap fires at the first
//! valid instant after it (a daily 02:30 job in New York runs at 03:00 EDT on the
//! spring-forward day), and a time inside a fall-back overlap fires at its earlier
//! occurrence only (01:30 EDT, not again at 01:30 EST). Several matching times in
//! one gap collapse into a single fire at the end of the gap. The `cron` crate on
//! its own skips gap times and fires overlap times twice; this module corrects both.
//!
//! # Fire times, downtime and jitter
//!
//! Fire times are exact instants, so `(schedule id, fire time)` is a unique key.
//! [`Schedule::due`] decides what to run after the daemon wakes, given the last
//! recorded fire and now. A fire counts as **on time** if it is at most
//! `grace` (default 1 minute) plus the maximum jitter old, and on-time fires are
//! always due; older fires were **missed**, and [`CatchUp`] decides about them.
//! Jitter delays *running* a fire, never its identity: the key stays the
//! un-jittered fire time, and [`Schedule::jitter_for`] is a pure function of a seed
//! and the fire time so that several daemons agree.

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::duration::Span;
use crate::local;

/// The time zone of a schedule that does not name one.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Shanghai;

/// How late a fire may run and still be on time, unless `grace` says otherwise.
pub const DEFAULT_GRACE: TimeDelta = TimeDelta::minutes(1);

/// Fire-time searches give up this many days (20 years) away from their start,
/// so a schedule whose filters can never match ends instead of looping.
const HORIZON_DAYS: u64 = 7305;

/// What to do with fires missed while the daemon was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CatchUp {
    /// Missed fires are dropped; only on-time fires run, and the next one is scheduled as usual.
    #[default]
    None,
    /// The most recent missed fire runs, unless an on-time fire runs anyway.
    Latest,
    /// Up to `max` of the most recent missed fires run, oldest first.
    All {
        /// How many missed fires at most (at least 1).
        max: u32,
    },
}

/// A schedule as written in a workflow file, before validation by [`Schedule::parse`].
///
/// Text fields stay text here so that errors can name the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// The cron expression, seconds first (see the module docs).
    pub cron: String,
    /// An IANA time zone name; Asia/Shanghai when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// What to do with missed fires; `none` when absent.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// Maximum delay before running a fire, as a span in `s`, `m` or `h` (at most `24h`).
    #[serde(default)]
    pub jitter: Option<String>,
    /// How late a fire may run and still count as on time, in `s`, `m` or `h`; `1m` when absent.
    #[serde(default)]
    pub grace: Option<String>,
    /// Fire only on working days (needs a calendar).
    #[serde(default)]
    pub working_days_only: bool,
    /// Fire only on the Nth working day of each month, 1 to 23 (needs a calendar).
    #[serde(default)]
    pub nth_working_day_of_month: Option<u32>,
}

impl ScheduleSpec {
    /// A spec with `cron` and every other field at its default.
    pub fn new(cron: &str) -> ScheduleSpec {
        ScheduleSpec {
            cron: cron.to_owned(),
            timezone: None,
            catch_up: CatchUp::None,
            jitter: None,
            grace: None,
            working_days_only: false,
            nth_working_day_of_month: None,
        }
    }
}

/// Why a [`ScheduleSpec`] is invalid; each message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Five fields: classic cron, without seconds.
    #[error(
        "`cron` expression `{expression}` has 5 fields: this syntax starts with seconds, e.g. `0 {expression}`"
    )]
    CronWithoutSeconds {
        /// The expression.
        expression: String,
    },
    /// The cron crate rejected the expression.
    #[error("`cron` expression `{expression}` is invalid: {message}")]
    Cron {
        /// The expression.
        expression: String,
        /// The parser's explanation.
        message: String,
    },
    /// Not an IANA time zone name.
    #[error(
        "`timezone` `{name}` is not a known time zone: expected an IANA name such as Asia/Shanghai"
    )]
    Timezone {
        /// The name as written.
        name: String,
    },
    /// `jitter` or `grace` is not a valid span for them.
    #[error("`{field}` `{value}` is invalid: {reason}")]
    Span {
        /// `jitter` or `grace`.
        field: &'static str,
        /// The text as written.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// `nth_working_day_of_month` out of range.
    #[error("`nth_working_day_of_month` must be between 1 and 23, found {0}")]
    NthWorkingDay(u32),
    /// `catch_up = { all = { max = 0 } }`.
    #[error("`catch_up` all needs `max` of at least 1")]
    CatchUpMax,
}

/// A validated schedule; see the module docs for the meaning of each part.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: cron::Schedule,
    timezone: Tz,
    catch_up: CatchUp,
    jitter: TimeDelta,
    grace: TimeDelta,
    working_days_only: bool,
    nth_working_day_of_month: Option<u32>,
}

impl Schedule {
    /// Validates `spec`.
    pub fn parse(spec: &ScheduleSpec) -> Result<Schedule, ScheduleError> {
        let expression = spec.cron.trim();
        if expression.split_whitespace().count() == 5 {
            return Err(ScheduleError::CronWithoutSeconds {
                expression: expression.to_owned(),
            });
        }
        let cron = expression
            .parse::<cron::Schedule>()
            .map_err(|e| ScheduleError::Cron {
                expression: expression.to_owned(),
                message: cron_message(&e.to_string()),
            })?;
        let timezone = match &spec.timezone {
            None => DEFAULT_TIMEZONE,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::Timezone { name: name.clone() })?,
        };
        if let CatchUp::All { max: 0 } = spec.catch_up {
            return Err(ScheduleError::CatchUpMax);
        }
        let jitter = match &spec.jitter {
            None => TimeDelta::zero(),
            Some(text) => exact_span("jitter", text, Some(TimeDelta::hours(24)))?,
        };
        let grace = match &spec.grace {
            None => DEFAULT_GRACE,
            Some(text) => exact_span("grace", text, None)?,
        };
        if let Some(n) = spec.nth_working_day_of_month
            && !(1..=23).contains(&n)
        {
            return Err(ScheduleError::NthWorkingDay(n));
        }
        Ok(Schedule {
            cron,
            timezone,
            catch_up: spec.catch_up,
            jitter,
            grace,
            working_days_only: spec.working_days_only,
            nth_working_day_of_month: spec.nth_working_day_of_month,
        })
    }

    /// The time zone whose wall clock the cron fields match.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The catch-up policy.
    pub fn catch_up(&self) -> CatchUp {
        self.catch_up
    }

    /// The cron expression as written.
    pub fn expression(&self) -> &str {
        self.cron.source()
    }

    /// The longest delay [`Schedule::jitter_for`] can give.
    pub fn jitter(&self) -> TimeDelta {
        self.jitter
    }

    /// What decides the fire times (expression, time zone, working-day filters) as one
    /// string: two schedules with the same fingerprint fire at the same instants.
    /// Catch-up, grace and jitter are left out: they change when a fire runs, not which
    /// fires exist.
    pub fn fingerprint(&self) -> String {
        let mut out = format!("{} @ {}", self.cron.source().trim(), self.timezone.name());
        if self.working_days_only {
            out += " working_days_only";
        }
        if let Some(n) = self.nth_working_day_of_month {
            out += &format!(" nth_working_day_of_month={n}");
        }
        out
    }

    /// Whether the schedule filters on working days and so should be given a calendar.
    pub fn needs_calendar(&self) -> bool {
        self.working_days_only || self.nth_working_day_of_month.is_some()
    }

    /// The first fire strictly after `t`, or `None` if there is none within 20 years
    /// (or before the cron crate's last year, 2100).
    pub fn next_after(&self, t: DateTime<Utc>, cal: Option<&Calendar>) -> Option<DateTime<Utc>> {
        let (mut cursor, _) = self.wall_bounds(t)?;
        let horizon = cursor.date().checked_add_days(Days::new(HORIZON_DAYS))?;
        loop {
            // Walk the wall-clock matches (computed in UTC, which has no DST) and
            // map each to an instant ourselves.
            let wall = self.cron.after(&cursor.and_utc()).next()?.naive_utc();
            if wall.date() > horizon {
                return None;
            }
            if !self.day_allowed(wall.date(), cal) {
                cursor = wall.date().and_hms_opt(23, 59, 59)?;
                continue;
            }
            let at = local::resolve(self.timezone, wall)?;
            if at > t {
                return Some(at);
            }
            cursor = wall;
        }
    }

    /// The last fire at or before `t`, or `None` if there is none within 20 years.
    pub fn last_at_or_before(
        &self,
        t: DateTime<Utc>,
        cal: Option<&Calendar>,
    ) -> Option<DateTime<Utc>> {
        let (_, upper) = self.wall_bounds(t)?;
        // The cron crate searches strictly before its argument.
        let mut cursor = upper.checked_add_signed(TimeDelta::nanoseconds(1))?;
        let horizon = cursor.date().checked_sub_days(Days::new(HORIZON_DAYS))?;
        loop {
            let wall = self.cron.after(&cursor.and_utc()).next_back()?.naive_utc();
            if wall.date() < horizon {
                return None;
            }
            if !self.day_allowed(wall.date(), cal) {
                cursor = wall.date().and_hms_opt(0, 0, 0)?;
                continue;
            }
            let at = local::resolve(self.timezone, wall)?;
            if at <= t {
                return Some(at);
            }
            cursor = wall;
        }
    }

    /// The fires to run now, oldest first, given the last fire recorded (`None`:
    /// never fired) and the current time.
    ///
    /// Every fire after `last_fire` and at or before `now` is either on time (at
    /// most grace + maximum jitter old), and always returned, or missed:
    /// - [`CatchUp::None`]: missed fires are not returned; the daemon simply
    ///   schedules [`Schedule::next_after`]`(now)`;
    /// - [`CatchUp::Latest`]: the most recent missed fire, only if no fire is on time;
    /// - [`CatchUp::All`]: the `max` most recent missed fires.
    ///
    /// With `last_fire = None` nothing counts as missed; pass the schedule's
    /// activation time instead to catch up from then.
    pub fn due(
        &self,
        last_fire: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        cal: Option<&Calendar>,
    ) -> Vec<DateTime<Utc>> {
        let on_time_since = now - self.grace - self.jitter;
        let missed_wanted = match (last_fire, self.catch_up) {
            (None, _) | (_, CatchUp::None) => 0,
            (_, CatchUp::Latest) => 1,
            (_, CatchUp::All { max }) => max as usize,
        };
        let mut on_time = Vec::new();
        let mut missed = Vec::new();
        let mut cursor = now;
        while let Some(fire) = self.last_at_or_before(cursor, cal) {
            if last_fire.is_some_and(|last| fire <= last) {
                break;
            }
            if fire >= on_time_since {
                on_time.push(fire);
            } else if missed.len() < missed_wanted {
                missed.push(fire);
            } else {
                break;
            }
            cursor = fire - TimeDelta::nanoseconds(1);
        }
        if self.catch_up == CatchUp::Latest && !on_time.is_empty() {
            missed.clear();
        }
        let mut fires = missed;
        fires.append(&mut on_time);
        fires.sort();
        fires
    }

    /// How long to delay running `fire`: in `[0, jitter)`, zero without jitter.
    ///
    /// A pure function of `seed` (e.g. the schedule id) and `fire`, computed with
    /// FNV-1a and a SplitMix64 finaliser, both fixed here so every daemon and every
    /// release agrees.
    pub fn jitter_for(&self, fire: DateTime<Utc>, seed: &str) -> TimeDelta {
        let Some(range) = self.jitter.num_nanoseconds().filter(|n| *n > 0) else {
            return TimeDelta::zero();
        };
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let seconds = fire.timestamp().to_be_bytes();
        let nanos = fire.timestamp_subsec_nanos().to_be_bytes();
        // 0xff never occurs in UTF-8, so it separates the seed from the time.
        let bytes = seed
            .as_bytes()
            .iter()
            .chain(&[0xff])
            .chain(&seconds)
            .chain(&nanos);
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        hash ^= hash >> 31;
        // `range` is positive and at most a day, so the remainder fits in i64.
        TimeDelta::nanoseconds((hash % range.unsigned_abs()) as i64)
    }

    /// Wall-clock bounds around `t`: every wall time that resolves to `t` lies
    /// between them, whatever offset was in force a day either side.
    fn wall_bounds(&self, t: DateTime<Utc>) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let day = TimeDelta::days(1);
        let offsets = [t - day, t, t + day].map(|x| {
            i64::from(
                self.timezone
                    .offset_from_utc_datetime(&x.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        });
        let min = *offsets.iter().min()?;
        let max = *offsets.iter().max()?;
        let utc = t.naive_utc();
        Some((
            utc.checked_add_signed(TimeDelta::seconds(min))?,
            utc.checked_add_signed(TimeDelta::seconds(max))?,
        ))
    }

    fn day_allowed(&self, date: NaiveDate, cal: Option<&Calendar>) -> bool {
        if self.working_days_only && !is_working_day(date, cal) {
            return false;
        }
        match self.nth_working_day_of_month {
            Some(n) => nth_working_day(date, n, cal) == Some(date),
            None => true,
        }
    }
}

/// The cron crate's message without its echo-and-caret lines, lowercase, no final period.
fn cron_message(raw: &str) -> String {
    let last = raw
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(raw);
    let last = last.trim().trim_end_matches('.');
    let mut chars = last.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "not a cron expression".to_owned(),
    }
}

/// A span for `jitter` or `grace`: exact units, not negative, at most `max`.
fn exact_span(
    field: &'static str,
    text: &str,
    max: Option<TimeDelta>,
) -> Result<TimeDelta, ScheduleError> {
    let invalid = |reason: String| ScheduleError::Span {
        field,
        value: text.to_owned(),
        reason,
    };
    let span: Span = text.parse().map_err(|e| invalid(format!("{e}")))?;
    let delta = span
        .exact()
        .ok_or_else(|| invalid("expected a fixed length in s, m or h".into()))?;
    if delta < TimeDelta::zero() {
        return Err(invalid("must not be negative".into()));
    }
    if let Some(max) = max
        && delta > max
    {
        return Err(invalid("must be at most 24h".into()));
    }
    Ok(delta)
}

/// Working day per the calendar, or Monday to Friday where it has no data.
fn is_working_day(date: NaiveDate, cal: Option<&Calendar>) -> bool {
    cal.and_then(|c| c.is_working_day(date))
        .unwrap_or(!matches!(date.weekday(), Weekday::Sat | Weekday::Sun))
}

/// The `n`th working day of `date`'s month, if the month has that many.
fn nth_working_day(date: NaiveDate, n: u32, cal: Option<&Calendar>) -> Option<NaiveDate> {
    let first = date.with_day(1)?;
    first
        .iter_days()
        .take_while(|d| d.month() == first.month())
        .filter(|d| is_working_day(*d, cal))
        .nth(usize::try_from(n).ok()?.checked_sub(1)?)
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

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn schedule(spec_toml: &str) -> Schedule {
        let spec: ScheduleSpec = toml::from_str(spec_toml).unwrap();
        Schedule::parse(&spec).unwrap()
    }

    /// Lists the fires of `spec_toml` after `from` (RFC 3339), `count` of them,
    /// on the cn-mainland calendar, as local RFC 3339 times, and compares with `expect`.
    fn check(spec_toml: &str, from: &str, count: usize, expect: &[&str]) {
        let schedule = schedule(spec_toml);
        let mut t = instant(from);
        let mut got = Vec::new();
        for _ in 0..count {
            let Some(next) = schedule.next_after(t, Some(&CN)) else {
                break;
            };
            got.push(next.with_timezone(&schedule.timezone()).to_rfc3339());
            t = next;
        }
        assert_eq!(got, expect, "{spec_toml}");
        // Walking backwards from the last fire must give the same fires.
        if let Some(last) = got.last() {
            let mut back = Vec::new();
            let mut t = instant(last);
            while let Some(prev) = schedule.last_at_or_before(t, Some(&CN)) {
                if prev <= instant(from) {
                    break;
                }
                back.push(prev.with_timezone(&schedule.timezone()).to_rfc3339());
                t = prev - TimeDelta::nanoseconds(1);
            }
            back.reverse();
            assert_eq!(back, expect, "backwards: {spec_toml}");
        }
    }

    #[test]
    fn daily_in_shanghai() {
        check(
            "cron = \"0 0 9 * * *\"",
            "2025-09-26T09:00:00+08:00",
            2,
            &["2025-09-27T09:00:00+08:00", "2025-09-28T09:00:00+08:00"],
        );
        check(
            "cron = \"0 0 9 * * *\"",
            "2025-09-26T08:59:59.999+08:00",
            1,
            &["2025-09-26T09:00:00+08:00"],
        );
    }

    #[test]
    fn working_days_only_follows_the_calendar() {
        check(
            "cron = \"0 0 9 * * *\"\nworking_days_only = true",
            "2025-09-26T09:00:00+08:00",
            4,
            &[
                "2025-09-28T09:00:00+08:00",
                "2025-09-29T09:00:00+08:00",
                "2025-09-30T09:00:00+08:00",
                "2025-10-09T09:00:00+08:00",
            ],
        );
    }

    #[test]
    fn monthly_joint_review_on_first_working_day() {
        check(
            "cron = \"0 0 9 * * *\"\nnth_working_day_of_month = 1",
            "2025-09-15T00:00:00+08:00",
            6,
            &[
                "2025-10-09T09:00:00+08:00", // 10-01..10-08 National Day
                "2025-11-03T09:00:00+08:00", // 11-01 Sat, 11-02 Sun
                "2025-12-01T09:00:00+08:00",
                "2026-01-04T09:00:00+08:00", // make-up Sunday after New Year
                "2026-02-02T09:00:00+08:00",
                "2026-03-02T09:00:00+08:00",
            ],
        );
        // 2027 is not covered: weekdays only, so Friday 2027-01-01.
        check(
            "cron = \"0 0 9 * * *\"\nnth_working_day_of_month = 1",
            "2026-12-15T00:00:00+08:00",
            2,
            &["2027-01-01T09:00:00+08:00", "2027-02-01T09:00:00+08:00"],
        );
        // Third working day of October 2025: 10-09, 10-10, 10-11 (make-up Saturday).
        check(
            "cron = \"0 30 9 * 10 *\"\nnth_working_day_of_month = 3",
            "2025-01-01T00:00:00+08:00",
            1,
            &["2025-10-11T09:30:00+08:00"],
        );
    }

    #[test]
    fn impossible_filters_end() {
        let s = schedule("cron = \"0 0 9 31 * *\"\nnth_working_day_of_month = 1");
        assert_eq!(
            s.next_after(instant("2025-01-01T00:00:00Z"), Some(&CN)),
            None
        );
        assert_eq!(
            s.last_at_or_before(instant("2025-01-01T00:00:00Z"), Some(&CN)),
            None
        );
    }

    const NY: &str = "timezone = \"America/New_York\"";

    #[test]
    fn dst_daily_0230_new_york_spring_forward() {
        // 2025-03-09 02:00 EST -> 03:00 EDT: 02:30 does not exist and fires at 03:00 EDT.
        check(
            &format!("cron = \"0 30 2 * * *\"\n{NY}"),
            "2025-03-07T12:00:00-05:00",
            4,
            &[
                "2025-03-08T02:30:00-05:00",
                "2025-03-09T03:00:00-04:00",
                "2025-03-10T02:30:00-04:00",
                "2025-03-11T02:30:00-04:00",
            ],
        );
    }

    #[test]
    fn dst_daily_0230_new_york_fall_back() {
        // 2025-11-02 02:00 EDT -> 01:00 EST: 02:30 exists once.
        check(
            &format!("cron = \"0 30 2 * * *\"\n{NY}"),
            "2025-10-31T12:00:00-04:00",
            4,
            &[
                "2025-11-01T02:30:00-04:00",
                "2025-11-02T02:30:00-05:00",
                "2025-11-03T02:30:00-05:00",
                "2025-11-04T02:30:00-05:00",
            ],
        );
    }

    #[test]
    fn dst_daily_0130_new_york_fall_back_fires_once() {
        // 01:30 happens twice on 2025-11-02; only the first (EDT) fires.
        let spec = format!("cron = \"0 30 1 * * *\"\n{NY}");
        check(
            &spec,
            "2025-11-01T12:00:00-04:00",
            2,
            &["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"],
        );
        // Asked from inside the repeated hour, after the first 01:30.
        check(
            &spec,
            "2025-11-02T01:10:00-05:00",
            1,
            &["2025-11-03T01:30:00-05:00"],
        );
    }

    #[test]
    fn dst_gap_collapses_several_times_into_one() {
        check(
            &format!("cron = \"0 0/30 * * * *\"\n{NY}"),
            "2025-03-09T01:00:00-05:00",
            4,
            &[
                "2025-03-09T01:30:00-05:00",
                "2025-03-09T03:00:00-04:00", // 02:00, 02:30 and 03:00 wall times
                "2025-03-09T03:30:00-04:00",
                "2025-03-09T04:00:00-04:00",
            ],
        );
        check(
            "cron = \"0 30 2 * * *\"\ntimezone = \"Europe/Berlin\"",
            "2025-03-29T12:00:00+01:00",
            2,
            &["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"],
        );
    }

    #[test]
    fn dst_berlin_fall_back_fires_once() {
        // 2025-10-26 03:00 CEST -> 02:00 CET: 02:30 happens twice and fires at its first occurrence.
        check(
            "cron = \"0 30 2 * * *\"\ntimezone = \"Europe/Berlin\"",
            "2025-10-25T12:00:00+02:00",
            3,
            &[
                "2025-10-26T02:30:00+02:00",
                "2025-10-27T02:30:00+01:00",
                "2025-10-28T02:30:00+01:00",
            ],
        );
    }

    #[test]
    fn dst_hourly_through_both_new_york_transitions() {
        let hourly = format!("cron = \"0 0 * * * *\"\n{NY}");
        // Spring forward: 02:00 does not exist; it and 03:00 are the one fire at 03:00 EDT.
        check(
            &hourly,
            "2025-03-09T00:30:00-05:00",
            3,
            &[
                "2025-03-09T01:00:00-05:00",
                "2025-03-09T03:00:00-04:00",
                "2025-03-09T04:00:00-04:00",
            ],
        );
        // Fall back: 01:00 happens twice and fires once (EDT); the hour after is 02:00 EST.
        check(
            &hourly,
            "2025-11-02T00:30:00-04:00",
            3,
            &[
                "2025-11-02T01:00:00-04:00",
                "2025-11-02T02:00:00-05:00",
                "2025-11-02T03:00:00-05:00",
            ],
        );
    }

    #[test]
    fn dst_due_after_downtime_across_a_transition() {
        // Down from before the gap to after it: the shifted 02:30 fire counts once.
        let spec = format!("cron = \"0 30 2 * * *\"\n{NY}\ncatch_up = {{ all = {{ max = 10 }} }}");
        check_due(
            &spec,
            Some("2025-03-08T07:30:00Z"),
            "2025-03-10T12:00:00Z",
            &["2025-03-09T07:00:00+00:00", "2025-03-10T06:30:00+00:00"],
        );
        // Across the fall-back night: 01:30 fires once, at 05:30 UTC (EDT), not at 06:30 UTC.
        let spec = format!("cron = \"0 30 1 * * *\"\n{NY}\ncatch_up = {{ all = {{ max = 10 }} }}");
        check_due(
            &spec,
            Some("2025-11-01T05:30:00Z"),
            "2025-11-02T12:00:00Z",
            &["2025-11-02T05:30:00+00:00"],
        );
        // Woken inside the repeated hour, just after the second 01:30: nothing new is due.
        check_due(
            &spec,
            Some("2025-11-02T05:30:00Z"),
            "2025-11-02T06:30:30Z",
            &[],
        );
    }

    #[test]
    fn fingerprint_names_what_decides_fire_times() {
        let a = schedule("cron = \"0 0 9 * * *\"\njitter = \"5m\"");
        let b = schedule("cron = \"0 0 9 * * *\"\ncatch_up = \"latest\"");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), "0 0 9 * * * @ Asia/Shanghai");
        let c = schedule("cron = \"0 0 9 * * *\"\ntimezone = \"UTC\"\nworking_days_only = true");
        assert_eq!(c.fingerprint(), "0 0 9 * * * @ UTC working_days_only");
        assert_eq!(a.expression(), "0 0 9 * * *");
        assert_eq!(a.jitter(), TimeDelta::minutes(5));
    }

    #[test]
    fn cron_crate_alone_skips_and_doubles() {
        // Why this module maps wall times itself: pin the raw crate's behaviour.
        let raw: cron::Schedule = "0 30 2 * * *".parse().unwrap();
        let ny = chrono_tz::America::New_York;
        let from = instant("2025-03-08T12:00:00Z").with_timezone(&ny);
        let next: Vec<String> = raw.after(&from).take(2).map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            next,
            ["2025-03-10T02:30:00-04:00", "2025-03-11T02:30:00-04:00"]
        );
        let raw: cron::Schedule = "0 30 1 * * *".parse().unwrap();
        let from = instant("2025-11-01T12:00:00Z").with_timezone(&ny);
        let next: Vec<String> = raw.after(&from).take(2).map(|t| t.to_rfc3339()).collect();
        assert_eq!(
            next,
            ["2025-11-02T01:30:00-04:00", "2025-11-02T01:30:00-05:00"]
        );
    }

    /// Calls `due(last_fire, now)` for `spec_toml` and compares the fires (UTC, RFC 3339).
    fn check_due(spec_toml: &str, last_fire: Option<&str>, now: &str, expect: &[&str]) {
        let schedule = schedule(spec_toml);
        let got: Vec<String> = schedule
            .due(last_fire.map(instant), instant(now), Some(&CN))
            .iter()
            .map(|t| t.to_rfc3339())
            .collect();
        assert_eq!(got, expect, "{spec_toml}, last {last_fire:?}, now {now}");
    }

    #[test]
    fn catch_up_policies() {
        let hourly = "cron = \"0 0 * * * *\"\ntimezone = \"UTC\"";
        let last = Some("2025-01-01T00:00:00Z");
        // Woken on time (30 s late): the fire is due whatever the policy.
        check_due(
            hourly,
            last,
            "2025-01-01T05:00:30Z",
            &["2025-01-01T05:00:00+00:00"],
        );
        check_due(
            &format!("{hourly}\ncatch_up = \"latest\""),
            last,
            "2025-01-01T05:00:30Z",
            &["2025-01-01T05:00:00+00:00"],
        );
        // Woken 10 minutes late after downtime: 01:00..05:00 were missed.
        check_due(hourly, last, "2025-01-01T05:10:00Z", &[]);
        check_due(
            &format!("{hourly}\ncatch_up = \"latest\""),
            last,
            "2025-01-01T05:10:00Z",
            &["2025-01-01T05:00:00+00:00"],
        );
        check_due(
            &format!("{hourly}\ncatch_up = {{ all = {{ max = 2 }} }}"),
            last,
            "2025-01-01T05:10:00Z",
            &["2025-01-01T04:00:00+00:00", "2025-01-01T05:00:00+00:00"],
        );
        check_due(
            &format!("{hourly}\ncatch_up = {{ all = {{ max = 10 }} }}"),
            last,
            "2025-01-01T05:10:00Z",
            &[
                "2025-01-01T01:00:00+00:00",
                "2025-01-01T02:00:00+00:00",
                "2025-01-01T03:00:00+00:00",
                "2025-01-01T04:00:00+00:00",
                "2025-01-01T05:00:00+00:00",
            ],
        );
        // Never fired: nothing is missed.
        check_due(
            &format!("{hourly}\ncatch_up = {{ all = {{ max = 10 }} }}"),
            None,
            "2025-01-01T05:10:00Z",
            &[],
        );
        // The last fire itself is never due again.
        check_due(
            hourly,
            Some("2025-01-01T05:00:00Z"),
            "2025-01-01T05:00:30Z",
            &[],
        );
        // Jitter widens on-time: 4 minutes late with 5m jitter is still on time.
        check_due(
            &format!("{hourly}\njitter = \"5m\""),
            last,
            "2025-01-01T05:04:00Z",
            &["2025-01-01T05:00:00+00:00"],
        );
        check_due(
            &format!("{hourly}\ngrace = \"0s\""),
            last,
            "2025-01-01T05:00:00.001Z",
            &[],
        );
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let s = schedule("cron = \"0 0 * * * *\"\njitter = \"5m\"");
        let fire = instant("2025-01-01T05:00:00Z");
        // Pinned so that daemons of different releases agree.
        assert_eq!(
            s.jitter_for(fire, "wf1.joint-review"),
            TimeDelta::nanoseconds(85_757_326_141)
        );
        let values: Vec<TimeDelta> = (0..200)
            .map(|h| s.jitter_for(fire + TimeDelta::hours(h), "wf1.joint-review"))
            .collect();
        assert!(
            values
                .iter()
                .all(|v| *v >= TimeDelta::zero() && *v < TimeDelta::minutes(5))
        );
        assert!(values.iter().any(|v| *v < TimeDelta::minutes(1)));
        assert!(values.iter().any(|v| *v > TimeDelta::minutes(4)));
        assert_ne!(s.jitter_for(fire, "a"), s.jitter_for(fire, "b"));
        let plain = schedule("cron = \"0 0 * * * *\"");
        assert_eq!(plain.jitter_for(fire, "a"), TimeDelta::zero());
    }

    /// Parses `spec_toml` and compares the error message (or `ok`).
    fn check_parse(spec_toml: &str, expect: &str) {
        let spec: ScheduleSpec = toml::from_str(spec_toml).unwrap();
        let got = match Schedule::parse(&spec) {
            Ok(_) => "ok".to_owned(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expect, "{spec_toml}");
    }

    #[test]
    fn parse_errors_name_the_field() {
        check_parse("cron = \"0 0 9 * * Mon-Fri 2025\"", "ok");
        check_parse("cron = \"@daily\"", "ok");
        check_parse(
            "cron = \"0 9 * * *\"",
            "`cron` expression `0 9 * * *` has 5 fields: this syntax starts with seconds, e.g. `0 0 9 * * *`",
        );
        check_parse(
            "cron = \"0 0 25 * * *\"",
            "`cron` expression `0 0 25 * * *` is invalid: hours must be less than 23. ('25' specified.)",
        );
        check_parse(
            "cron = \"@daily\"\ntimezone = \"Asia/Shangai\"",
            "`timezone` `Asia/Shangai` is not a known time zone: expected an IANA name such as Asia/Shanghai",
        );
        check_parse(
            "cron = \"@daily\"\njitter = \"3x\"",
            "`jitter` `3x` is invalid: unknown unit `x` in `3x`: expected s, m, h, d, wd, w, mo or y",
        );
        check_parse(
            "cron = \"@daily\"\njitter = \"1wd\"",
            "`jitter` `1wd` is invalid: expected a fixed length in s, m or h",
        );
        check_parse(
            "cron = \"@daily\"\njitter = \"25h\"",
            "`jitter` `25h` is invalid: must be at most 24h",
        );
        check_parse(
            "cron = \"@daily\"\ngrace = \"-1m\"",
            "`grace` `-1m` is invalid: must not be negative",
        );
        check_parse(
            "cron = \"@daily\"\nnth_working_day_of_month = 0",
            "`nth_working_day_of_month` must be between 1 and 23, found 0",
        );
        check_parse(
            "cron = \"@daily\"\ncatch_up = { all = { max = 0 } }",
            "`catch_up` all needs `max` of at least 1",
        );
        assert!(toml::from_str::<ScheduleSpec>("cron = \"@daily\"\ncolour = 1").is_err());
        let s = schedule("cron = \"@daily\"");
        assert_eq!(s.timezone(), chrono_tz::Asia::Shanghai);
        assert!(!s.needs_calendar());
        assert!(schedule("cron = \"@daily\"\nworking_days_only = true").needs_calendar());
    }
}
