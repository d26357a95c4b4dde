//! The wire types of the HTTP API: every JSON body a handler returns, answers and problems.
//!
//! Each type derives `Serialize` (the handler's answer), `Deserialize` (a client's, such
//! as the test suite's) and `ToSchema` (its schema in the OpenAPI document), so the
//! document and the wire format come from the same definition. The store's and the
//! runtime's row types are mapped here, one `From` per row type; the crates below the
//! API know nothing of OpenAPI. Values that are free-form by nature (instance data, the
//! engine's state, event payloads, form schemas) stay `serde_json::Value`.
//!
//! Times are milliseconds since the Unix epoch where the store keeps them so (`*_at`
//! fields of rows), and RFC 3339 strings where the API computes them (`due`,
//! `next_fire`, …).

use chrono::{DateTime, Utc};
use clearflow_runtime::data::{
    AuditRecord, EventRecord, FireRecord, HistoryRecord, InstanceRow, MailRecord, TaskView,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

// ---------------------------------------------------------------------------------------
// Errors

/// An RFC 9457 problem detail: the body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// Always `about:blank`: the status and title say what went wrong.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, fixed summary of the kind of problem (`not found`, `forbidden`, …).
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this request; never database or file details.
    pub detail: String,
    /// Every reason, when there are several (form violations, separation of duties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------
// Workflows

/// A deployed workflow, as `GET /v1/workflows` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowSummary {
    /// The workflow id.
    pub id: String,
    /// Its title, when the file gives one.
    pub title: Option<String>,
    /// The deployed version: the sha256 of the file.
    pub version: String,
    /// The file it was loaded from, relative to the workflows folder.
    pub file: String,
    /// How many steps it compiles to.
    pub steps: usize,
    /// The roles the workflow names.
    pub roles: Vec<String>,
    /// The workflows started together with each instance of this one (`on_start`).
    pub concurrent_starts: Vec<ConcurrentStart>,
    /// The ids of its cron schedules.
    pub schedules: Vec<String>,
}

/// A workflow started together with another (`on_start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConcurrentStart {
    /// The workflow started.
    pub workflow: String,
    /// The link name it gets in the starting instance.
    #[serde(rename = "as")]
    pub alias: String,
}

impl From<&clearflow_core::Workflow> for WorkflowSummary {
    fn from(wf: &clearflow_core::Workflow) -> WorkflowSummary {
        WorkflowSummary {
            id: wf.id.clone(),
            title: wf.title.clone(),
            version: wf.hash.clone(),
            file: wf.file.clone(),
            steps: wf.nodes.len(),
            roles: wf.roles.clone(),
            concurrent_starts: wf
                .on_start
                .iter()
                .map(|s| ConcurrentStart {
                    workflow: s.workflow.clone(),
                    alias: s.alias.clone(),
                })
                .collect(),
            schedules: wf.schedules.iter().map(|s| s.id.clone()).collect(),
        }
    }
}

/// The answer of `GET /v1/workflows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    /// Every deployed workflow.
    pub items: Vec<WorkflowSummary>,
}

/// The answer of `GET /v1/workflows/{id}`: the workflow as listed, with its input
/// schema and step ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowDetail {
    /// The workflow as `GET /v1/workflows` lists it.
    #[serde(flatten)]
    pub summary: WorkflowSummary,
    /// The JSON Schema a start's `input` must match, or null when there is none.
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
    /// The ids of its named steps, in file order.
    pub step_ids: Vec<String>,
}

/// The answer of `POST /v1/workflows/validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidateReply {
    /// Whether the file has no errors.
    pub valid: bool,
    /// Every diagnostic of the file (none when it is valid and has no warnings).
    pub diagnostics: Vec<Diagnostic>,
}

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Diagnostic {
    /// The file the problem is in (`request.yaml` for a validated body).
    pub file: String,
    /// Where in the file.
    pub pos: Position,
    /// `error` (the file cannot be used) or `warning` (it works, probably not as meant).
    pub severity: Severity,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<String>,
}

/// A place in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Position {
    /// The line, counted from 1.
    pub line: u32,
    /// The column, counted from 1, in characters.
    pub col: u32,
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// The file works, but probably not as meant.
    Warning,
}

impl From<clearflow_core::Diagnostic> for Diagnostic {
    fn from(d: clearflow_core::Diagnostic) -> Diagnostic {
        Diagnostic {
            file: d.file,
            pos: Position {
                line: d.pos.line,
                col: d.pos.col,
            },
            severity: match d.severity {
                clearflow_core::Severity::Error => Severity::Error,
                clearflow_core::Severity::Warning => Severity::Warning,
            },
            message: d.message,
            hint: d.hint,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Instances

/// An instance as listed: its row, without its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    /// The instance id.
    pub id: String,
    /// The workflow id.
    pub workflow: String,
    /// The workflow version it runs (sha256 of the file), pinned at start.
    pub def_hash: String,
    /// `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The outcome word it ended with, if it ended with one.
    pub outcome: Option<String>,
    /// The instance that started it, for a linked or concurrent start.
    pub parent_id: Option<String>,
    /// Its link name in the parent.
    pub parent_link: Option<String>,
    /// The idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// When it was started (ms since the epoch).
    pub created_at: i64,
    /// When it last changed (ms since the epoch).
    pub updated_at: i64,
    /// When it ended (ms since the epoch).
    pub ended_at: Option<i64>,
    /// The next time the engine has work for it (ms since the epoch), if any.
    pub wake_at: Option<i64>,
    /// Its version, raised by every committed change.
    pub version: i64,
}

impl From<InstanceRow> for Instance {
    fn from(r: InstanceRow) -> Instance {
        Instance {
            id: r.id,
            workflow: r.workflow,
            def_hash: r.def_hash,
            status: r.status,
            outcome: r.outcome,
            parent_id: r.parent_id,
            parent_link: r.parent_link,
            idempotency_key: r.idempotency_key,
            created_at: r.created_at,
            updated_at: r.updated_at,
            ended_at: r.ended_at,
            wake_at: r.wake_at,
            version: r.version,
        }
    }
}

/// The answer of `GET /v1/instances`: one page of instances, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstancePage {
    /// The instances of this page.
    pub items: Vec<Instance>,
    /// The cursor for `after` to read the next page; null on the last page.
    pub next: Option<String>,
}

/// One row of an instance's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    /// The row id; rows are in this order.
    pub id: i64,
    /// When it happened (ms since the epoch).
    pub at: i64,
    /// Who did it: a user, `engine`, `scheduler`, …
    pub actor: String,
    /// What happened (`started`, `step.completed`, `task.created`, …).
    pub kind: String,
    /// The step concerned, if any.
    pub step: Option<String>,
    /// Details of what happened.
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl From<HistoryRecord> for HistoryEntry {
    fn from(r: HistoryRecord) -> HistoryEntry {
        HistoryEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            kind: r.kind,
            step: r.step,
            detail: r.detail,
        }
    }
}

/// An event or timer queued for an instance and not yet applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PendingEvent {
    /// The row id.
    pub id: i64,
    /// When it is due (ms since the epoch).
    pub due_at: i64,
    /// `timer` or `event`.
    pub kind: String,
    /// The engine's timer id, for a timer.
    pub timer_id: Option<i64>,
    /// The engine event it will apply.
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl From<EventRecord> for PendingEvent {
    fn from(r: EventRecord) -> PendingEvent {
        PendingEvent {
            id: r.id,
            due_at: r.due_at,
            kind: r.kind,
            timer_id: r.timer_id,
            payload: r.payload,
        }
    }
}

/// The answer of `GET /v1/instances/{id}`: the row, the engine's state of the instance,
/// its pending work, its children and its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceDetail {
    /// The instance's row.
    pub instance: Instance,
    /// The instance data (`input`, `vars`, step results, …).
    #[schema(value_type = Object)]
    pub data: Value,
    /// The engine's status of the instance: running, or how it ended (with the
    /// failure's reason).
    #[schema(value_type = Object)]
    pub result: Value,
    /// The linked instances it started, by link name.
    #[schema(value_type = Object)]
    pub links: Value,
    /// Its tokens by id: the step each is at and what it waits for.
    #[schema(value_type = Object)]
    pub waiting: Value,
    /// Timers whose due date is provisional (computed on a calendar not yet published).
    #[schema(value_type = Object)]
    pub provisional: Value,
    /// Tasks whose due date is provisional.
    #[schema(value_type = Object)]
    pub provisional_tasks: Value,
    /// Events and timers queued for it and not yet applied.
    pub pending: Vec<PendingEvent>,
    /// The instances it started (at most 1000).
    pub children: Vec<Instance>,
    /// Its history, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// The answer of `POST /v1/instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StartReply {
    /// The instance id.
    pub id: String,
    /// False when the idempotency key had started this instance before.
    pub created: bool,
    /// With `?wait=`: the instance when it ended or parked, or as it was when the wait
    /// ran out (`settled` false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<SettledView>,
}

/// An instance after a `?wait=`: how it ended, or where it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettledView {
    /// True when the instance ended or parked; false when the wait ran out first.
    pub settled: bool,
    /// `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// The outcome word when it ended.
    pub outcome: Option<String>,
    /// When it ended (ms since the epoch).
    pub ended_at: Option<i64>,
    /// The next time the engine has work for it (a timer), if any (ms since the epoch).
    pub wake_at: Option<i64>,
    /// The instance data.
    #[schema(value_type = Object)]
    pub data: Value,
    /// How it ended (the engine's status, with the failure's reason).
    #[schema(value_type = Object)]
    pub result: Value,
    /// The steps it waits at, and what for (a task, a timer, an event).
    pub waiting: Vec<WaitingAt>,
}

/// One step an instance waits at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WaitingAt {
    /// The step id.
    pub step: String,
    /// What it waits for: `{"for": "event", "name", "key"}`, `{"for": "timer", …}`,
    /// `{"for": "task", …}`.
    #[schema(value_type = Object)]
    pub wait: Value,
}

/// The answer of `POST /v1/instances/{id}/signal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivered {
    /// Always true: the event is queued for the instance.
    pub delivered: bool,
}

/// The answer of `POST /v1/instances/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// Always true: the cancellation is queued for the instance.
    pub accepted: bool,
}

/// The answer of `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveredTo {
    /// The ids of the instances waiting for this name and key (possibly none).
    pub delivered_to: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Admin

/// The answer of `GET /v1/admin/clock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClockReply {
    /// The daemon's time (RFC 3339).
    pub now: String,
    /// Whether the clock is the manual one (`[clock] mode = "manual"`).
    pub manual: bool,
}

/// The answer of `POST /v1/admin/clock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClockSet {
    /// The clock's time after the move (RFC 3339); a manual clock never goes back.
    pub now: String,
}

/// One row of the security audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Its position in the hash chain (1, 2, …).
    pub seq: i64,
    /// When it was recorded (ms since the epoch).
    pub at: i64,
    /// What happened (`token.created`, `identity.read`, `retention.deleted`, …).
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// The instance concerned, if any.
    pub instance_id: Option<String>,
    /// Details (never secrets or confidential data).
    #[schema(value_type = Object)]
    pub detail: Value,
    /// This row's hash, over the previous row's hash and this row.
    pub hash: String,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> AuditEntry {
        AuditEntry {
            seq: r.seq,
            at: r.at,
            kind: r.kind,
            actor: r.actor,
            instance_id: r.instance_id,
            detail: r.detail,
            hash: r.hash,
        }
    }
}

/// The answer of `GET /v1/audit`: one page of audit rows, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// The rows of this page.
    pub items: Vec<AuditEntry>,
    /// The `seq` to pass as `after` for the next page; null on the last page.
    pub next: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// Mail

/// A message of the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutboxMessage {
    /// The outbox id.
    pub id: String,
    /// The instance that sent it, if any.
    pub instance_id: Option<String>,
    /// The notify step that sent it, if any.
    pub step: Option<String>,
    /// The message's `Message-ID`.
    pub message_id: String,
    /// Its recipients: `to`, `cc` and `bcc`, each a list of addresses.
    #[schema(value_type = Object)]
    pub recipients: Value,
    /// Its subject.
    pub subject: String,
    /// `queued`, `sent` or `dead`.
    pub status: String,
    /// How many delivery attempts were made.
    pub attempts: i64,
    /// When the next attempt is due (ms since the epoch).
    pub next_attempt_at: i64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The server's reply when it was sent.
    pub reply: Option<String>,
    /// When it was queued (ms since the epoch).
    pub created_at: i64,
    /// When it was sent (ms since the epoch).
    pub sent_at: Option<i64>,
    /// Each recipient's delivery so far, by recipient (its address, or `reporter`):
    /// `{state, reply, at}` with state `sent` or `refused`; a recipient not listed is
    /// still to be tried. A message with some recipients refused is `sent`, and
    /// `last_error` names the refusals.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub delivery: Value,
}

impl From<MailRecord> for OutboxMessage {
    fn from(r: MailRecord) -> OutboxMessage {
        OutboxMessage {
            id: r.id,
            instance_id: r.instance_id,
            step: r.step,
            message_id: r.message_id,
            recipients: r.recipients,
            subject: r.subject,
            status: r.status,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            reply: r.reply,
            created_at: r.created_at,
            sent_at: r.sent_at,
            delivery: r.delivery,
        }
    }
}

/// The answer of `GET /v1/mail`: outbox messages, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MailList {
    /// The messages.
    pub items: Vec<OutboxMessage>,
}

/// The answer of `POST /v1/mail/{id}/retry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Queued {
    /// Always true: the message is queued for delivery.
    pub queued: bool,
}

// ---------------------------------------------------------------------------------------
// Schedules

/// A cron schedule with its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    /// The workflow id.
    pub workflow: String,
    /// The schedule id within the workflow.
    pub schedule: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone the expression is read in.
    pub timezone: String,
    /// What a fire does while an instance of the previous fire still runs.
    pub overlap: Overlap,
    /// What happens to fire times missed while the daemon was down.
    pub catch_up: CatchUp,
    /// The most missed fires started with `catch_up: all`.
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

/// What a fire does while an instance of the previous fire still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the fire.
    Skip,
    /// Start anyway.
    Allow,
    /// Cancel the running instance, then start.
    CancelPrevious,
}

/// What happens to fire times missed while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// They are dropped.
    None,
    /// Only the most recent one is started.
    Latest,
    /// Every one is started, oldest first, up to `catch_up_max`.
    All,
}

impl From<clearflow_runtime::scheduler::ScheduleView> for Schedule {
    fn from(v: clearflow_runtime::scheduler::ScheduleView) -> Schedule {
        use clearflow_core::definition::model as def;
        Schedule {
            workflow: v.workflow,
            schedule: v.schedule,
            cron: v.cron,
            timezone: v.timezone,
            overlap: match v.overlap {
                def::Overlap::Skip => Overlap::Skip,
                def::Overlap::Allow => Overlap::Allow,
                def::Overlap::CancelPrevious => Overlap::CancelPrevious,
            },
            catch_up: match v.catch_up {
                def::CatchUpDef::None => CatchUp::None,
                def::CatchUpDef::Latest => CatchUp::Latest,
                def::CatchUpDef::All => CatchUp::All,
            },
            catch_up_max: v.catch_up_max,
            jitter_ms: v.jitter_ms,
            paused: v.paused,
            last_fire: v.last_fire,
            last_instance: v.last_instance,
            next_fire: v.next_fire,
            next_run: v.next_run,
        }
    }
}

/// The answer of `GET /v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// Every schedule of the deployed workflow versions.
    pub items: Vec<Schedule>,
    /// The clock time of the scheduler's last completed round; null before the first.
    pub evaluated_at: Option<DateTime<Utc>>,
}

/// A decided fire of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleFire {
    /// The fire time.
    pub fire_time: DateTime<Utc>,
    /// `started`, `skipped` or `failed`.
    pub outcome: String,
    /// The instance it started.
    pub instance_id: Option<String>,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// When it was decided.
    pub decided_at: DateTime<Utc>,
}

impl From<FireRecord> for ScheduleFire {
    fn from(f: FireRecord) -> ScheduleFire {
        ScheduleFire {
            fire_time: clearflow_runtime::clock::from_ms(f.fire_time),
            outcome: f.outcome,
            instance_id: f.instance_id,
            reason: f.reason,
            decided_at: clearflow_runtime::clock::from_ms(f.decided_at),
        }
    }
}

/// The answer of `GET /v1/schedules/{workflow}/{schedule}/fires`: decided fires,
/// newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FireList {
    /// The fires.
    pub items: Vec<ScheduleFire>,
}

// ---------------------------------------------------------------------------------------
// Tasks

/// A human task: its row, with its dates as RFC 3339 and whether it is late.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Task {
    /// The task id.
    pub id: String,
    /// The instance it belongs to.
    pub instance_id: String,
    /// Its number within the instance.
    pub task_no: i64,
    /// The engine token waiting for it.
    pub token: i64,
    /// The task step.
    pub step: String,
    /// The workflow id.
    pub workflow: String,
    /// Its title.
    pub title: Option<String>,
    /// The role whose members may act on it.
    pub role: Option<String>,
    /// The user it is assigned to.
    pub assignee: Option<String>,
    /// The user who claimed it.
    pub claimed_by: Option<String>,
    /// `open`, `completed`, `rejected` or `cancelled`.
    pub status: String,
    /// Its priority; higher first.
    pub priority: i64,
    /// When it is due (ms since the epoch).
    pub due_at: Option<i64>,
    /// When to follow it up (ms since the epoch).
    pub follow_up_at: Option<i64>,
    /// Whether the due date is provisional (computed on a calendar not yet published).
    pub provisional: bool,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// When it was closed (ms since the epoch).
    pub closed_at: Option<i64>,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// The completed form, or the rejection reason.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// `due_at` as RFC 3339.
    pub due: Option<String>,
    /// `follow_up_at` as RFC 3339.
    pub follow_up: Option<String>,
    /// Whether it is open and past its due date.
    pub overdue: bool,
}

impl From<TaskView<'_>> for Task {
    fn from(v: TaskView<'_>) -> Task {
        let r = v.row.clone();
        Task {
            id: r.id,
            instance_id: r.instance_id,
            task_no: r.task_no,
            token: r.token,
            step: r.step,
            workflow: r.workflow,
            title: r.title,
            role: r.role,
            assignee: r.assignee,
            claimed_by: r.claimed_by,
            status: r.status,
            priority: r.priority,
            due_at: r.due_at,
            follow_up_at: r.follow_up_at,
            provisional: r.provisional,
            created_at: r.created_at,
            closed_at: r.closed_at,
            closed_by: r.closed_by,
            result: r.result,
            due: v.due,
            follow_up: v.follow_up,
            overdue: v.overdue,
        }
    }
}

/// The answer of `GET /v1/tasks`: tasks the caller may see, highest priority first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    /// The tasks of this page.
    pub items: Vec<Task>,
    /// The cursor for `after` to read the next page; null on the last page.
    pub next: Option<String>,
}

/// The answer of `GET /v1/tasks/{id}`: the task, and what its step asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskDetail {
    /// The task.
    #[serde(flatten)]
    pub task: Task,
    /// The JSON Schema the completion's `form` must match; null when the step has no
    /// form. Absent (like `can_reject`) only when the task's workflow version cannot be
    /// read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub form: Option<Value>,
    /// Whether the step may be rejected (it has an `on_reject`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_reject: Option<bool>,
}

// ---------------------------------------------------------------------------------------
// Intake

/// The answer of `POST /v1/public/intake`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IntakeReply {
    /// The receipt code, shown only this once: the reporter's only way to the case.
    pub receipt: String,
    /// A reminder to keep the code.
    pub notice: String,
}

/// The answer of `POST /v1/public/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusReply {
    /// The case's public status (`vars.public_status`; `received` until the workflow sets one).
    pub status: String,
    /// Feedback for the reporter (`vars.feedback`), or null.
    pub feedback: Option<String>,
}

/// The answer of `GET /v1/instances/{id}/identity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IdentityRead {
    /// The case the identity belongs to.
    pub instance: String,
    /// The reporter's decrypted identity.
    pub identity: ReporterIdentity,
    /// Who read it (the caller).
    pub read_by: String,
    /// Why, as given in `?reason=` and recorded in the audit log.
    pub reason: String,
    /// The approval the read rests on, when the case's workflow asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<IdentityApprovalView>,
}

/// The approval an identity read rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IdentityApprovalView {
    /// The deciding task step (`identity_read.approval`).
    pub step: String,
    /// Who completed it.
    pub by: String,
}

/// A reporter's identity; a field the reporter did not give is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReporterIdentity {
    /// The full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The telephone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The identity-card number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// The postal address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl From<clearflow_runtime::identity::Identity> for ReporterIdentity {
    fn from(i: clearflow_runtime::identity::Identity) -> ReporterIdentity {
        ReporterIdentity {
            name: i.name,
            email: i.email,
            phone: i.phone,
            id_number: i.id_number,
            address: i.address,
        }
    }
}
