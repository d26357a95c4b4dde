//! Working-day calendars, durations, deadlines and cron fire times for clearflow, pure and clock-injected.
//!
//! # Layout
//!
//! - [`duration`]: [`Span`], the `15wd` / `-2wd` / `18mo` amounts written in workflow files.
//! - [`calendar`]: working-day [`Calendar`]s, loaded from one TOML file per region
//!   and year (`workflows/calendars/cn-mainland/2025.toml`) by [`load_dir`].
//! - [`deadline`]: [`add`] a span to an instant (working days, DST-safe calendar
//!   days and months) and [`period_end`] for impact periods.
//! - [`schedule`]: cron [`Schedule`]s with a time zone, catch-up policy, jitter
//!   and working-day filters; fire times are computed from a time passed in.
//! - [`local`]: the one rule for local times that do not exist or exist twice.
//!
//! **Architecture invariant:** nothing here reads the clock or does IO, except
//! [`load_dir`], which reads calendar files. Every function that needs "now"
//! takes it as a parameter, so tests use explicit instants and never sleep.
//! There is no async and no tokio.

pub mod calendar;
pub mod deadline;
pub mod duration;
pub mod local;
pub mod schedule;

pub use calendar::{Calendar, CalendarError, Calendars, load_dir};
pub use deadline::{Deadline, DeadlineError, PeriodEndRule, PeriodError, add, period_end};
pub use duration::{Span, SpanError, Unit};
pub use schedule::{CatchUp, Schedule, ScheduleError, ScheduleSpec};
