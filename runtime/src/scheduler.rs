//! The cron scheduler: starts workflow instances at their schedules' fire times, once each.
//!
//! One loop per daemon, beside the engine worker. Each round reads every schedule of the
//! current workflow versions and its stored state, asks `clearflow_time` which fire
//! times are due since the stored cursor (the catch-up policy decides about fire times
//! missed during downtime), and decides each due fire in one store transaction with the
//! instance it starts ([`Store::fire_schedule`]). The fire's primary key
//! `(workflow, schedule, fire time)` makes the decision unique across restarts and
//! daemons sharing a PostgreSQL database. Then it sleeps on the daemon's clock until the
//! next fire (plus its jitter), a poke (reload, pause, resume), the poll interval (work
//! of other daemons) or shutdown.
//!
//! Rules (documented in README.md):
//! - a schedule seen for the first time, or whose cron, time zone or working-day filters
//!   changed, starts at that moment: nothing earlier is back-filled;
//! - jitter delays when a fire runs, never its identity (the un-jittered fire time);
//! - paused schedules do not fire; resuming continues from the resume time;
//! - overlap looks at root instances started by earlier fires of the same schedule that
//!   are still running.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clearflow_core::Workflow;
use clearflow_core::definition::{CatchUpDef, Overlap};
use clearflow_core::engine::Event;
use clearflow_core::workflow::ScheduleSpec;
use serde::Serialize;
use tokio::sync::Notify;

use crate::clock::{from_ms, ms};
use crate::worker::Worker;
use clearflow_store::StoreError;
use clearflow_store::schedules::{Fire, FireOutcome, OverlapPolicy, ScheduleState};

/// Counters for metrics (decisions made by this daemon).
#[derive(Default)]
pub struct ScheduleCounters {
    /// Fires that started an instance.
    pub fired: AtomicU64,
    /// Fires skipped because an earlier fire's instance was still running.
    pub skipped: AtomicU64,
    /// Fires whose start was refused (recorded with the reason).
    pub failed: AtomicU64,
    /// Running instances cancelled by `cancel_previous`.
    pub cancelled: AtomicU64,
}

/// The scheduler of one daemon.
pub struct Scheduler {
    worker: Arc<Worker>,
    /// Poked when schedules may have changed (reload, pause, resume).
    pub(crate) wake: Notify,
    /// Metrics.
    pub(crate) counters: ScheduleCounters,
    /// The clock reading (ms) of the last completed round; -1 before the first.
    evaluated_at: AtomicI64,
}

/// A schedule as listed by the API.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    /// Workflow id.
    pub workflow: String,
    /// Schedule id.
    pub schedule: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone the expression is read in.
    pub timezone: String,
    /// `skip`, `allow` or `cancel_previous`.
    pub overlap: Overlap,
    /// `none`, `latest` or `all`.
    pub catch_up: CatchUpDef,
    /// Most missed fires run with `catch_up: all`.
    pub catch_up_max: Option<u32>,
    /// The longest jitter, in milliseconds.
    pub jitter_ms: i64,
    /// Whether it is paused.
    pub paused: bool,
    /// The latest fire time decided (started, skipped or failed).
    pub last_fire: Option<DateTime<Utc>>,
    /// The instance the latest started fire created.
    pub last_instance: Option<String>,
    /// The next fire time (none while paused).
    pub next_fire: Option<DateTime<Utc>>,
    /// When the next fire runs: its fire time plus its jitter.
    pub next_run: Option<DateTime<Utc>>,
}

impl Scheduler {
    /// A scheduler starting instances through `worker`.
    pub fn new(worker: Arc<Worker>) -> Scheduler {
        Scheduler {
            worker,
            wake: Notify::new(),
            counters: ScheduleCounters::default(),
            evaluated_at: AtomicI64::new(-1),
        }
    }

    /// The clock reading of the last completed round.
    pub fn evaluated_at(&self) -> Option<DateTime<Utc>> {
        let at = self.evaluated_at.load(Ordering::Acquire);
        (at >= 0).then(|| from_ms(at))
    }

    /// One round: decides every due fire. Returns when the next one runs.
    pub async fn round(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = self.worker.clock.now();
        let catalog = self.worker.registry.catalog();
        let states = self.worker.store.schedule_states().await?;
        let mut wake: Option<DateTime<Utc>> = None;
        for wf in catalog.workflows.values() {
            for spec in &wf.schedules {
                let state = self.state(&states, wf, spec, now).await?;
                if state.paused {
                    continue;
                }
                if let Some(at) = self.fire_due(wf, spec, &state, now).await? {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            }
        }
        self.evaluated_at.store(ms(now), Ordering::Release);
        Ok(wake)
    }

    /// The stored state of `spec`, created (or restarted from the reload that changed its
    /// fire times) when needed.
    async fn state(
        &self,
        states: &[ScheduleState],
        wf: &Workflow,
        spec: &ScheduleSpec,
        now: DateTime<Utc>,
    ) -> Result<ScheduleState, StoreError> {
        let fingerprint = spec.schedule.fingerprint();
        match states
            .iter()
            .find(|s| s.workflow == wf.id && s.schedule == spec.id)
        {
            Some(s) if s.fingerprint == fingerprint => Ok(s.clone()),
            found => {
                // Counting starts when the definition was loaded, not when this round
                // noticed it: a fire between the two is not lost.
                let since = ms(now).min(self.worker.registry.loaded_at());
                let state = self
                    .worker
                    .store
                    .sync_schedule(&wf.id, &spec.id, &fingerprint, since)
                    .await?;
                if found.is_some() {
                    tracing::info!(workflow = %wf.id, schedule = %spec.id, %fingerprint, "schedule changed; its fire times count from the reload");
                } else {
                    tracing::info!(workflow = %wf.id, schedule = %spec.id, %fingerprint, "schedule active");
                }
                Ok(state)
            }
        }
    }

    /// Decides the fires of one schedule that are due and whose jitter has passed.
    /// Returns when the next fire runs.
    async fn fire_due(
        &self,
        wf: &Workflow,
        spec: &ScheduleSpec,
        state: &ScheduleState,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let calendars = self.worker.registry.calendars();
        let cal = wf.calendar.as_deref().and_then(|c| calendars.get(c));
        let seed = seed(wf, spec);
        let cursor = from_ms(state.cursor);
        for fire in spec.schedule.due(Some(cursor), now, cal) {
            let run_at = run_at(spec, fire, &seed);
            if run_at > now {
                // Later fires wait for this one: fires are decided in order.
                return Ok(Some(run_at));
            }
            self.fire(wf, spec, fire, now).await?;
        }
        let next = spec.schedule.next_after(now.max(cursor), cal);
        Ok(next.map(|f| run_at(spec, f, &seed)))
    }

    /// Decides one fire: start, skip (overlap) or record why the start was refused.
    async fn fire(
        &self,
        wf: &Workflow,
        spec: &ScheduleSpec,
        fire: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let actor = format!("schedule:{}/{}", wf.id, spec.id);
        let key = format!(
            "schedule:{}@{}",
            spec.id,
            fire.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        let tree = self
            .worker
            .tree(&wf.id, spec.input.clone(), None, &actor, Some(key), now)
            .map_err(|e| e.to_string());
        let cancel = serde_json::to_string(&Event::Cancel {
            reason: format!(
                "cancelled by schedule `{}`: its fire at {} replaces this run",
                spec.id,
                fire.to_rfc3339()
            ),
        })
        .expect("event serialises");
        let overlap = match spec.overlap {
            Overlap::Skip => OverlapPolicy::Skip,
            Overlap::Allow => OverlapPolicy::Allow,
            Overlap::CancelPrevious => OverlapPolicy::CancelPrevious,
        };
        let outcome = self
            .worker
            .store
            .fire_schedule(
                &Fire {
                    workflow: &wf.id,
                    schedule: &spec.id,
                    fire_time: ms(fire),
                    overlap,
                    start: tree.as_deref().map_err(Clone::clone),
                    cancel_event: &cancel,
                    actor: &actor,
                },
                ms(now),
            )
            .await?;
        let (workflow, schedule) = (&wf.id, &spec.id);
        match outcome {
            FireOutcome::AlreadyDecided => {
                tracing::debug!(%workflow, %schedule, %fire, "fire already decided elsewhere");
            }
            FireOutcome::Started {
                instance,
                cancelled,
            } => {
                self.counters.fired.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .cancelled
                    .fetch_add(cancelled.len() as u64, Ordering::Relaxed);
                if !cancelled.is_empty() {
                    tracing::info!(%workflow, %schedule, %fire, cancelled = %cancelled.join(", "), "overlap: cancelling the previous run");
                }
                tracing::info!(%workflow, %schedule, %fire, %instance, "schedule fired");
                self.worker.wake.notify_one();
            }
            FireOutcome::Skipped { running } => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%workflow, %schedule, %fire, running = %running.join(", "), "schedule fire skipped: an earlier run is still going (overlap: skip)");
            }
            FireOutcome::Failed(reason) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%workflow, %schedule, %fire, %reason, "schedule fire could not start an instance");
            }
        }
        Ok(())
    }

    /// Every schedule of the current workflow versions with its state and next fire.
    pub async fn list(&self) -> Result<Vec<ScheduleView>, StoreError> {
        let now = self.worker.clock.now();
        let catalog = self.worker.registry.catalog();
        let states = self.worker.store.schedule_states().await?;
        let mut out = Vec::new();
        for wf in catalog.workflows.values() {
            for spec in &wf.schedules {
                let state = states
                    .iter()
                    .find(|s| s.workflow == wf.id && s.schedule == spec.id);
                out.push(self.view(wf, spec, state, now));
            }
        }
        Ok(out)
    }

    /// Pauses or resumes a schedule of the current catalog; `None` when there is no such schedule.
    pub async fn set_paused(
        &self,
        workflow: &str,
        schedule: &str,
        paused: bool,
    ) -> Result<Option<ScheduleView>, StoreError> {
        let catalog = self.worker.registry.catalog();
        let Some(wf) = catalog.get(workflow) else {
            return Ok(None);
        };
        let Some(spec) = wf.schedules.iter().find(|s| s.id == schedule) else {
            return Ok(None);
        };
        let now = self.worker.clock.now();
        let state = self
            .worker
            .store
            .set_schedule_paused(
                workflow,
                schedule,
                &spec.schedule.fingerprint(),
                paused,
                ms(now),
            )
            .await?;
        tracing::info!(%workflow, %schedule, "schedule {}", if paused { "paused" } else { "resumed" });
        self.wake.notify_one();
        Ok(Some(self.view(wf, spec, Some(&state), now)))
    }

    fn view(
        &self,
        wf: &Workflow,
        spec: &ScheduleSpec,
        state: Option<&ScheduleState>,
        now: DateTime<Utc>,
    ) -> ScheduleView {
        let paused = state.is_some_and(|s| s.paused);
        let calendars = self.worker.registry.calendars();
        let cal = wf.calendar.as_deref().and_then(|c| calendars.get(c));
        let next_fire = if paused {
            None
        } else {
            // A fire already due but waiting for its jitter comes first; a schedule not
            // yet seen by the scheduler counts from now.
            let cursor = state.map_or(now, |s| from_ms(s.cursor));
            spec.schedule
                .due(Some(cursor), now, cal)
                .into_iter()
                .next()
                .or_else(|| spec.schedule.next_after(now.max(cursor), cal))
        };
        let catch_up_max = match spec.schedule.catch_up() {
            clearflow_time::CatchUp::All { max } => Some(max),
            _ => None,
        };
        ScheduleView {
            workflow: wf.id.clone(),
            schedule: spec.id.clone(),
            cron: spec.schedule.expression().to_owned(),
            timezone: spec.schedule.timezone().name().to_owned(),
            overlap: spec.overlap,
            catch_up: spec.catch_up,
            catch_up_max,
            jitter_ms: spec.schedule.jitter().num_milliseconds(),
            paused,
            last_fire: state.and_then(|s| s.last_fire).map(from_ms),
            last_instance: state.and_then(|s| s.last_instance.clone()),
            next_fire,
            next_run: next_fire.map(|f| run_at(spec, f, &seed(wf, spec))),
        }
    }
}

/// The jitter seed of a schedule: stable across daemons and releases.
fn seed(wf: &Workflow, spec: &ScheduleSpec) -> String {
    format!("{}/{}", wf.id, spec.id)
}

/// When `fire` runs: its time plus its jitter, rounded up to the millisecond, the
/// resolution of the daemon's clock and store.
fn run_at(spec: &ScheduleSpec, fire: DateTime<Utc>, seed: &str) -> DateTime<Utc> {
    let at = fire + spec.schedule.jitter_for(fire, seed);
    let truncated = from_ms(ms(at));
    if truncated < at {
        truncated + chrono::TimeDelta::milliseconds(1)
    } else {
        truncated
    }
}

impl crate::service::Service for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }
    fn poll(&self) -> Duration {
        Duration::from_millis(self.worker.cfg.poll_ms.max(10))
    }
    fn wake(&self) -> &Notify {
        &self.wake
    }
    fn clock(&self) -> &crate::clock::Clock {
        &self.worker.clock
    }
    async fn round(self: &Arc<Self>) -> Result<crate::service::Next, String> {
        let next = Scheduler::round(self).await.map_err(|e| e.to_string())?;
        Ok(crate::service::Next::Idle(next))
    }
}
