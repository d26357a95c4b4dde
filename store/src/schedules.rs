//! Cron schedule state and fire records: exactly one decision per fire time, written in
//! the transaction that starts the fire's instance.
//!
//! A fire's identity is `(workflow, schedule, fire time)`, the primary key of
//! `schedule_fires`. Whoever inserts that row — this daemon after a restart, or another
//! daemon on the same PostgreSQL database — decides the fire, and the instance it
//! starts (or the cancel events of `cancel_previous`) commit with it or not at all.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, NewInstance, Store, StoreError, insert_instances, push_event};

/// The stored state of one schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    /// Workflow id.
    pub workflow: String,
    /// Schedule id within the workflow.
    pub schedule: String,
    /// What decides the fire times (see `clearflow_time::Schedule::fingerprint`).
    pub fingerprint: String,
    /// Whether the schedule is paused.
    pub paused: bool,
    /// Fire times after this instant (ms) are still to be decided.
    pub cursor: i64,
    /// The latest fire time decided (ms).
    pub last_fire: Option<i64>,
    /// The instance the latest started fire created.
    pub last_instance: Option<String>,
    /// Last change (ms).
    pub updated_at: i64,
}

/// What to do when an instance of an earlier fire is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapPolicy {
    /// Record the fire as skipped.
    Skip,
    /// Start anyway.
    Allow,
    /// Send the running instances a cancel event, then start.
    CancelPrevious,
}

/// One fire to decide.
#[derive(Debug, Clone)]
pub struct Fire<'a> {
    /// Workflow id.
    pub workflow: &'a str,
    /// Schedule id.
    pub schedule: &'a str,
    /// The (un-jittered) fire time, ms.
    pub fire_time: i64,
    /// The overlap policy.
    pub overlap: OverlapPolicy,
    /// The instance tree to start, or why it could not be built.
    pub start: Result<&'a [NewInstance], String>,
    /// The cancel event (JSON) for `cancel_previous`.
    pub cancel_event: &'a str,
    /// Who acts (in events and instances).
    pub actor: &'a str,
}

/// How a fire was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FireOutcome {
    /// Someone decided this fire before (another daemon, or an earlier round), or the
    /// schedule was paused, changed or resumed past it meanwhile: nothing was written.
    AlreadyDecided,
    /// The instance was started; `cancelled` are the earlier instances sent a cancel.
    Started {
        /// The root instance started.
        instance: String,
        /// Earlier instances of the schedule sent a cancel event (`cancel_previous`).
        cancelled: Vec<String>,
    },
    /// Skipped because these instances of earlier fires are still running.
    Skipped {
        /// The running instances.
        running: Vec<String>,
    },
    /// The start was refused; the reason is recorded.
    Failed(String),
}

/// A recorded fire, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FireRecord {
    /// The fire time (ms).
    pub fire_time: i64,
    /// `started`, `skipped` or `failed`.
    pub outcome: String,
    /// The instance started.
    pub instance_id: Option<String>,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// When it was decided (ms).
    pub decided_at: i64,
}

const STATE_COLUMNS: &str =
    "workflow, schedule, fingerprint, paused, cursor, last_fire, last_instance, updated_at";

fn state_row(r: &AnyRow) -> Result<ScheduleState, sqlx::Error> {
    Ok(ScheduleState {
        workflow: r.try_get("workflow")?,
        schedule: r.try_get("schedule")?,
        fingerprint: r.try_get("fingerprint")?,
        paused: r.try_get::<i64, _>("paused")? != 0,
        cursor: r.try_get("cursor")?,
        last_fire: r.try_get("last_fire")?,
        last_instance: r.try_get("last_instance")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    /// Every stored schedule state.
    pub async fn schedule_states(&self) -> Result<Vec<ScheduleState>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {STATE_COLUMNS} FROM schedules ORDER BY workflow, schedule"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| state_row(r).map_err(StoreError::from))
            .collect()
    }

    /// The state of a schedule whose fire times are now decided by `fingerprint`: a
    /// schedule seen for the first time, or whose fingerprint changed, starts at `now`
    /// (nothing before it is back-filled). Safe to call from several daemons at once.
    pub async fn sync_schedule(
        &self,
        workflow: &str,
        schedule: &str,
        fingerprint: &str,
        now: i64,
    ) -> Result<ScheduleState, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO schedules (workflow, schedule, fingerprint, paused, cursor, last_fire, last_instance, updated_at) \
             VALUES ($1, $2, $3, 0, $4, NULL, NULL, $4) ON CONFLICT DO NOTHING",
        )
        .bind(workflow)
        .bind(schedule)
        .bind(fingerprint)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A changed schedule starts again from now; the cursor never moves back.
        sqlx::query(
            "UPDATE schedules SET fingerprint = $3, cursor = CASE WHEN cursor > $4 THEN cursor ELSE $4 END, updated_at = $4 \
             WHERE workflow = $1 AND schedule = $2 AND fingerprint <> $3",
        )
        .bind(workflow)
        .bind(schedule)
        .bind(fingerprint)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {STATE_COLUMNS} FROM schedules WHERE workflow = $1 AND schedule = $2"
        ))
        .bind(workflow)
        .bind(schedule)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(state_row(&row)?)
    }

    /// Pauses or resumes a schedule. Resuming moves the cursor to `now`, so fire times
    /// that passed while paused are never back-filled.
    pub async fn set_schedule_paused(
        &self,
        workflow: &str,
        schedule: &str,
        fingerprint: &str,
        paused: bool,
        now: i64,
    ) -> Result<ScheduleState, StoreError> {
        self.sync_schedule(workflow, schedule, fingerprint, now)
            .await?;
        let sql = if paused {
            "UPDATE schedules SET paused = 1, updated_at = $3 WHERE workflow = $1 AND schedule = $2 AND paused = 0"
        } else {
            "UPDATE schedules SET paused = 0, cursor = CASE WHEN cursor > $3 THEN cursor ELSE $3 END, updated_at = $3 \
             WHERE workflow = $1 AND schedule = $2 AND paused <> 0"
        };
        sqlx::query(sql)
            .bind(workflow)
            .bind(schedule)
            .bind(now)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {STATE_COLUMNS} FROM schedules WHERE workflow = $1 AND schedule = $2"
        ))
        .bind(workflow)
        .bind(schedule)
        .fetch_one(&self.pool)
        .await?;
        Ok(state_row(&row)?)
    }

    /// Decides one fire in one transaction: the fire row (whose primary key makes the
    /// decision unique), the instance tree it starts, the cancel events of
    /// `cancel_previous`, and the schedule's cursor.
    pub async fn fire_schedule(
        &self,
        fire: &Fire<'_>,
        now: i64,
    ) -> Result<FireOutcome, StoreError> {
        let mut tx = self.begin().await?;
        // Lock the schedule's row (PostgreSQL; SQLite's write lock is already held), so
        // concurrent deciders of one schedule queue here and see each other's work.
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let state = sqlx::query(&format!(
            "SELECT paused, cursor FROM schedules WHERE workflow = $1 AND schedule = $2{lock}"
        ))
        .bind(fire.workflow)
        .bind(fire.schedule)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(state) = state else {
            return Ok(FireOutcome::AlreadyDecided);
        };
        let paused = state.try_get::<i64, _>("paused")? != 0;
        let cursor: i64 = state.try_get("cursor")?;
        if paused || fire.fire_time <= cursor {
            return Ok(FireOutcome::AlreadyDecided);
        }
        let running: Vec<String> = sqlx::query(
            "SELECT f.instance_id FROM schedule_fires f JOIN instances i ON i.id = f.instance_id \
             WHERE f.workflow = $1 AND f.schedule = $2 AND i.status = 'running' ORDER BY f.fire_time",
        )
        .bind(fire.workflow)
        .bind(fire.schedule)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get("instance_id"))
        .collect();
        let outcome = match (&fire.start, fire.overlap) {
            (Err(reason), _) => FireOutcome::Failed(reason.clone()),
            (Ok(_), OverlapPolicy::Skip) if !running.is_empty() => FireOutcome::Skipped { running },
            (Ok(tree), policy) => match tree.first() {
                Some(root) => FireOutcome::Started {
                    instance: root.id.clone(),
                    cancelled: if policy == OverlapPolicy::CancelPrevious {
                        running
                    } else {
                        Vec::new()
                    },
                },
                None => FireOutcome::Failed("no instance to start".into()),
            },
        };
        let (word, instance, reason) = match &outcome {
            FireOutcome::Started { instance, .. } => ("started", Some(instance.as_str()), None),
            FireOutcome::Skipped { running } => (
                "skipped",
                None,
                Some(format!(
                    "overlap: instance(s) {} of an earlier fire still running",
                    running.join(", ")
                )),
            ),
            FireOutcome::Failed(reason) => ("failed", None, Some(reason.clone())),
            FireOutcome::AlreadyDecided => unreachable!("decided above"),
        };
        let inserted = sqlx::query(
            "INSERT INTO schedule_fires (workflow, schedule, fire_time, outcome, instance_id, reason, decided_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(fire.workflow)
        .bind(fire.schedule)
        .bind(fire.fire_time)
        .bind(word)
        .bind(instance)
        .bind(&reason)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(FireOutcome::AlreadyDecided);
        }
        if let FireOutcome::Started { cancelled, .. } = &outcome {
            for id in cancelled {
                push_event(&mut tx, id, fire.cancel_event, fire.actor, now).await?;
            }
            if let Ok(tree) = &fire.start {
                let rows: Vec<&NewInstance> = tree.iter().collect();
                insert_instances(&mut tx, &rows, now).await?;
            }
        }
        sqlx::query(
            "UPDATE schedules SET cursor = $3, last_fire = $3, \
             last_instance = COALESCE($4, last_instance), updated_at = $5 \
             WHERE workflow = $1 AND schedule = $2",
        )
        .bind(fire.workflow)
        .bind(fire.schedule)
        .bind(fire.fire_time)
        .bind(instance)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The most recent fires of a schedule, newest first.
    pub async fn schedule_fires(
        &self,
        workflow: &str,
        schedule: &str,
        limit: u32,
    ) -> Result<Vec<FireRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT fire_time, outcome, instance_id, reason, decided_at FROM schedule_fires \
             WHERE workflow = $1 AND schedule = $2 ORDER BY fire_time DESC LIMIT $3",
        )
        .bind(workflow)
        .bind(schedule)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FireRecord {
                    fire_time: r.try_get("fire_time")?,
                    outcome: r.try_get("outcome")?,
                    instance_id: r.try_get("instance_id")?,
                    reason: r.try_get("reason")?,
                    decided_at: r.try_get("decided_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
