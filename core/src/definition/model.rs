//! The workflow file format as written by administrators: the raw, typed YAML model.
//!
//! These types mirror the file one to one and reject unknown fields. They carry no
//! meaning beyond shape; [`crate::compile`] checks them and turns them into an
//! executable [`crate::Workflow`]. The JSON Schema in `workflows/workflow.schema.json`
//! is generated from these types.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

/// A workflow file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "clearflow workflow")]
pub struct WorkflowDef {
    /// The workflow's id, used to start it and to reference it from other workflows
    /// (lowercase letters, digits and `-`).
    pub id: String,
    /// A short human title, e.g. `检举控告 complaint handling`.
    #[serde(default)]
    pub title: Option<String>,
    /// What the workflow does and who acts in it.
    #[serde(default)]
    pub description: Option<String>,
    /// An informational version number; running instances are pinned to the file's
    /// content hash, not to this number.
    #[serde(default)]
    pub version: Option<u32>,
    /// The working-day calendar for `wd` durations, e.g. `cn-mainland`.
    #[serde(default)]
    pub calendar: Option<String>,
    /// IANA timezone for dates and durations (default `Asia/Shanghai`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// JSON Schema the start input must satisfy.
    #[serde(default)]
    pub input: Option<Value>,
    /// Roles that act in this workflow.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Workflows started in the same transaction as every instance of this one and
    /// linked to it by name (e.g. the fault-tolerance assessment of an accountability case).
    #[serde(default)]
    pub on_start: Vec<ConcurrentStartDef>,
    /// Cron schedules that start this workflow.
    #[serde(default)]
    pub schedules: Vec<ScheduleDef>,
    /// Whether the reporter's sealed identity may be read through this workflow's
    /// instances (by a holder of `read_identity`, with a reason; default: yes).
    #[serde(default)]
    pub identity_read: Option<IdentityReadDef>,
    /// The steps, run in order unless a step says otherwise.
    pub steps: Vec<StepDef>,
}

/// The rule for reading the reporter's identity through an instance of this workflow:
/// `{ allowed: false }` (never), or `{ approval: STEP, granted: EXPRESSION }` (only once
/// the task step `approval` has been done and `granted` is true over the case data).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityReadDef {
    /// `false`: no read through this workflow's instances, whoever asks (default `true`).
    #[serde(default = "default_true")]
    pub allowed: bool,
    /// The task step whose completion decides on a read, e.g. the leader's approval.
    #[serde(default)]
    pub approval: Option<String>,
    /// An expression over the case data that must be true for a read, e.g.
    /// `identity_request.granted`.
    #[serde(default)]
    pub granted: Option<String>,
}

fn default_true() -> bool {
    true
}

/// A workflow started together with this one.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrentStartDef {
    /// The workflow to start.
    pub start: String,
    /// The link name, used by `await:` steps and in expressions as `links.NAME`.
    #[serde(rename = "as")]
    pub alias: String,
    /// Its input; strings may hold `${ expression }`s over this instance's input.
    #[serde(default)]
    pub input: Option<Value>,
}

/// A cron schedule that starts the workflow.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// A name for the schedule, unique in the file (default `default`, then `schedule-N`).
    #[serde(default)]
    pub id: Option<String>,
    /// A cron expression in the `cron` crate's syntax, seconds first:
    /// `sec min hour day-of-month month day-of-week [year]`, e.g. `0 0 9 * * Mon`.
    pub cron: String,
    /// IANA timezone the cron expression is read in (default: the workflow's).
    #[serde(default)]
    pub timezone: Option<String>,
    /// What to do when the previous run is still going.
    #[serde(default)]
    pub overlap: Overlap,
    /// What to do about fire times missed while the daemon was down.
    #[serde(default)]
    pub catch_up: CatchUpDef,
    /// The most missed fire times started with `catch_up: all` (default 10).
    #[serde(default)]
    pub catch_up_max: Option<u32>,
    /// A random but deterministic delay up to this duration, e.g. `5m`.
    #[serde(default)]
    pub jitter: Option<String>,
    /// Fire only on working days of the workflow's calendar.
    #[serde(default)]
    pub working_days_only: bool,
    /// Fire only on the Nth working day of the month (1 = first).
    #[serde(default)]
    pub nth_working_day_of_month: Option<u32>,
    /// The input of each started instance.
    #[serde(default)]
    pub input: Option<Value>,
}

/// Overlap policy of a schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip a fire while an instance of the previous fire is still running.
    #[default]
    Skip,
    /// Start anyway.
    Allow,
    /// Cancel the running instance, then start.
    CancelPrevious,
}

/// Catch-up policy of a schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUpDef {
    /// Fire times missed during downtime are dropped.
    None,
    /// Only the most recent missed fire time is started.
    #[default]
    Latest,
    /// Every missed fire time is started, oldest first, up to `catch_up_max`.
    All,
}

/// One step. Exactly one of the kind fields (`plugin`, `task`, `notify`, `switch`,
/// `parallel`, `wait`, `set`, `end`, `start`, `await`, `goto`) must be present.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// The step's id: lowercase letters, digits and `_`, unique in the workflow. The
    /// step's result is available to later expressions under this name.
    #[serde(default)]
    pub id: Option<String>,
    /// A human title for task lists and graphs.
    #[serde(default)]
    pub title: Option<String>,
    /// Run the step only when this expression is true; otherwise skip to the next.
    #[serde(default, rename = "if")]
    pub condition: Option<String>,
    /// The step to continue with afterwards (default: the following one).
    #[serde(default)]
    pub next: Option<String>,

    /// Call this WASM plugin.
    #[serde(default)]
    pub plugin: Option<String>,
    /// The plugin's input; strings may hold `${ expression }`s.
    #[serde(default)]
    pub with: Option<Value>,
    /// JSON Schema the plugin's output must satisfy.
    #[serde(default)]
    pub output: Option<Value>,
    /// Retry policy for transient plugin failures.
    #[serde(default)]
    pub retry: Option<RetryDef>,
    /// Wall-clock limit of one plugin call, e.g. `5s` (default from the plugin's config).
    #[serde(default)]
    pub timeout: Option<String>,

    /// A human task.
    #[serde(default)]
    pub task: Option<TaskDef>,
    /// An email notification.
    #[serde(default)]
    pub notify: Option<NotifyDef>,
    /// Conditional jumps: the first case whose `when` is true wins; a case without
    /// `when` is the default; with no match the step falls through.
    #[serde(default)]
    pub switch: Option<Vec<CaseDef>>,
    /// Branches that run concurrently and join.
    #[serde(default)]
    pub parallel: Option<ParallelDef>,
    /// Wait for a duration, a date, or an external event.
    #[serde(default)]
    pub wait: Option<WaitDef>,
    /// Set variables (`vars.NAME` in expressions).
    #[serde(default)]
    pub set: Option<Map<String, Value>>,
    /// End the instance with an outcome.
    #[serde(default)]
    pub end: Option<EndDef>,
    /// Start another workflow.
    #[serde(default)]
    pub start: Option<StartDef>,
    /// Wait until a linked instance has ended; its outcome is this step's result.
    #[serde(default, rename = "await")]
    pub await_: Option<AwaitDef>,
    /// Jump to another step of the same sequence (e.g. back to a draft).
    #[serde(default)]
    pub goto: Option<String>,
}

/// Retry policy of a plugin step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    /// Attempts in all, the first included (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// `exponential` (default) or `fixed`.
    #[serde(default)]
    pub backoff: Option<Backoff>,
    /// Delay before the second attempt (default `1s`).
    #[serde(default)]
    pub initial: Option<String>,
    /// Longest delay between attempts (default `5m`).
    #[serde(default)]
    pub max: Option<String>,
    /// Add up to this fraction of random delay (0.0 to 1.0, default 0.2).
    #[serde(default)]
    pub jitter: Option<f64>,
}

/// Backoff shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// Double the delay each time.
    Exponential,
    /// The same delay each time.
    Fixed,
}

/// A human task.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    /// The role whose members may claim the task.
    #[serde(default)]
    pub role: Option<String>,
    /// An expression giving the user the task is assigned to.
    #[serde(default)]
    pub assignee: Option<String>,
    /// The task's title; may hold `${ expression }`s.
    #[serde(default)]
    pub title: Option<String>,
    /// JSON Schema (an object schema) the completion form is checked against; the
    /// completed form is the step's result.
    #[serde(default)]
    pub form: Option<Value>,
    /// Due date as a duration from creation, e.g. `15wd`.
    #[serde(default)]
    pub due: Option<String>,
    /// Follow-up date as a duration from creation.
    #[serde(default)]
    pub follow_up: Option<String>,
    /// Reminders relative to the due date, e.g. `[-2wd, 0d, 1d]`.
    #[serde(default)]
    pub remind: Vec<String>,
    /// Repeat a reminder this often after the due date, e.g. `1wd`.
    #[serde(default)]
    pub remind_every: Option<String>,
    /// What happens when the task is still open some time after it is due.
    #[serde(default)]
    pub escalate: Option<EscalateDef>,
    /// Priority, higher first (default 0).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Steps whose actors may not complete this task (separation of duties).
    #[serde(default)]
    pub distinct_from: Vec<String>,
    /// The instance's initiator may not complete this task.
    #[serde(default)]
    pub distinct_from_initiator: bool,
    /// Where a rejection goes (a step of the same sequence); without it the task
    /// cannot be rejected.
    #[serde(default)]
    pub on_reject: Option<String>,
    /// Mail the assignee (or the role's members) the `task-assigned` notice when the
    /// task is created or reassigned (default true).
    #[serde(default)]
    pub notify_assigned: Option<bool>,
}

/// Escalation of an overdue task.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateDef {
    /// How long after the due date, e.g. `3wd`.
    pub after: String,
    /// Notify the members of this role.
    #[serde(default)]
    pub notify: Option<String>,
    /// Reassign the task to this role.
    #[serde(default)]
    pub reassign: Option<String>,
    /// Abandon the task and continue at this step.
    #[serde(default)]
    pub goto: Option<String>,
}

/// An email notification.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyDef {
    /// The template's name in `workflows/templates/` (without locale and extension).
    pub template: String,
    /// Recipients: expressions giving addresses, or `role:NAME` for a role's members.
    #[serde(default)]
    pub to: Recipients,
    /// Copy recipients.
    #[serde(default)]
    pub cc: Recipients,
    /// Blind-copy recipients.
    #[serde(default)]
    pub bcc: Recipients,
    /// `zh-CN` or `en`; an expression is allowed (default: the recipient's, then `zh-CN`).
    #[serde(default)]
    pub locale: Option<String>,
    /// Values the template can use; strings may hold `${ expression }`s.
    #[serde(default)]
    pub data: Option<Value>,
    /// Lists read from the store when the message is queued (agendas, digests): each
    /// becomes a template value of that name holding one entry per matching instance.
    #[serde(default)]
    pub lists: std::collections::BTreeMap<String, ListDef>,
}

/// A list read from the store for a notification: the instances of a workflow, or open
/// tasks (`tasks:`). Exactly one of the two.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDef {
    /// The workflow whose instances are listed.
    #[serde(default)]
    pub instances: Option<String>,
    /// Open tasks instead, e.g. `{ role: handler, overdue: true }`. Each entry has `id`,
    /// `instance_id`, `workflow`, `step`, `title`, `role`, `assignee`, `claimed_by`,
    /// `priority`, `due` (RFC 3339 or null), `overdue` and `provisional`; highest
    /// priority first, then the oldest. `status`, `where` and `fields` are for instances.
    #[serde(default)]
    pub tasks: Option<TaskListDef>,
    /// Which instances by status: `running` (default), `completed`, `failed`,
    /// `cancelled`, `ended` (any but running) or `any`.
    #[serde(default)]
    pub status: Option<String>,
    /// Keep only the instances for which this expression is true. It reads the listed
    /// instance's own names: `input`, `vars`, `instance`, `links` and its step results.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// Values of each entry: name → expression over the listed instance, as `where`.
    /// Every entry also has `id`, `workflow`, `status`, `started_at` and `waiting_at`
    /// (the steps it waits at).
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, String>,
    /// The most entries (default 200, at most 1000); the oldest instances come first.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Which open tasks a notification lists.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskListDef {
    /// Only the tasks of this candidate role.
    #[serde(default)]
    pub role: Option<String>,
    /// Only the tasks of this workflow.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Only the tasks past their due date when the mail is queued.
    #[serde(default)]
    pub overdue: bool,
}

/// One or several recipients.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Recipients {
    /// No recipient.
    #[default]
    None,
    /// One recipient.
    One(String),
    /// Several recipients.
    Many(Vec<String>),
}

impl Recipients {
    /// The recipients as a list.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Recipients::None => &[],
            Recipients::One(one) => std::slice::from_ref(one),
            Recipients::Many(many) => many,
        }
    }
}

/// One case of a `switch`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseDef {
    /// The condition; a case without one is the default.
    #[serde(default)]
    pub when: Option<String>,
    /// The step to jump to.
    pub goto: String,
}

/// Concurrent branches.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParallelDef {
    /// When the join completes (default `all`).
    #[serde(default)]
    pub join: JoinDef,
    /// The branches; each is a sequence of steps.
    pub branches: Vec<BranchDef>,
}

/// One branch of a `parallel` step.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchDef {
    /// A name for graphs and history.
    #[serde(default)]
    pub name: Option<String>,
    /// The branch's steps.
    pub steps: Vec<StepDef>,
}

/// Join condition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum JoinDef {
    /// `all` or `any`.
    Mode(JoinMode),
    /// `{ n: 2 }`: after N branches; the others are cancelled.
    Count {
        /// How many branches must finish.
        n: u32,
    },
}

impl Default for JoinDef {
    fn default() -> Self {
        JoinDef::Mode(JoinMode::All)
    }
}

/// Named join modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// Every branch.
    All,
    /// The first branch; the others are cancelled.
    Any,
}

/// A wait: exactly one of `for`, `until`, `event`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitDef {
    /// A duration, e.g. `3d` or `15wd`.
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
    /// An expression giving a date (`YYYY-MM-DD`, start of that day in the workflow's
    /// timezone) or an RFC 3339 time.
    #[serde(default)]
    pub until: Option<String>,
    /// The name of an external event to wait for.
    #[serde(default)]
    pub event: Option<String>,
    /// An expression giving the correlation key the event must carry.
    #[serde(default)]
    pub key: Option<String>,
    /// Give up waiting for the event after this duration.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Where to continue after a timeout (default: the next step, with the result
    /// `{timed_out: true}`).
    #[serde(default)]
    pub on_timeout: Option<String>,
}

/// The end of an instance.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EndDef {
    /// `end: OUTCOME`.
    Outcome(String),
    /// `end: { outcome, output }`.
    Full {
        /// The outcome, e.g. `cleared`.
        outcome: String,
        /// The instance's output; strings may hold `${ expression }`s.
        #[serde(default)]
        output: Option<Value>,
    },
}

/// Start another workflow.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartDef {
    /// The workflow to start.
    pub workflow: String,
    /// Its input; strings may hold `${ expression }`s.
    #[serde(default)]
    pub input: Option<Value>,
    /// Wait for it to end; its outcome and output become this step's result.
    #[serde(default, rename = "await")]
    pub wait: bool,
    /// Link it under this name, for a later `await:` step.
    #[serde(default, rename = "as")]
    pub alias: Option<String>,
    /// What happens to it when this instance is cancelled: `cancel` (the default) or
    /// `abandon` (it runs on by itself).
    #[serde(default)]
    pub on_parent_cancel: OnParentCancel,
}

/// What happens to a started instance when the instance that started it is cancelled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnParentCancel {
    /// It is cancelled too, and its own children with it.
    #[default]
    Cancel,
    /// It runs on by itself.
    Abandon,
}

/// Await a linked instance.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AwaitDef {
    /// `await: LINK`.
    Link(String),
    /// `await: { link, timeout, on_timeout }`.
    Full {
        /// The link name (from `on_start` or a `start` step's `as`).
        link: String,
        /// Give up after this duration.
        #[serde(default)]
        timeout: Option<String>,
        /// Where to continue after a timeout.
        #[serde(default)]
        on_timeout: Option<String>,
    },
}
