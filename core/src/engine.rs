//! The instance state machine: `apply(workflow, instance, event, env) -> transition`.
//!
//! Pure and deterministic: time comes in through [`Env::now`], nothing here performs IO.
//! An event moves the instance forward as far as it can go without the outside world
//! (control flow runs to the next wait), and the result lists the effects the shell must
//! perform and the history entries it must append, all in the same transaction.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::workflow::*;

mod context;
mod tasks;
pub use tasks::{
    OpenTask, Refusal, RefusalKind, TaskAction, TaskTimer, check_claim, check_task_action,
};

/// Most signals kept for an instance that is not waiting for them yet.
pub const MAX_BUFFERED_SIGNALS: usize = 100;

/// What the engine needs from outside: the time, the calendars and the step bounds.
pub struct Env<'a> {
    /// Now.
    pub now: DateTime<Utc>,
    /// Working-day calendars by region.
    pub calendars: &'a clearflow_time::Calendars,
    /// Steps left in this advance ([`Limits::steps_per_advance`](crate::Limits)), shared by
    /// every event applied with this `Env`: when it reaches zero the instance stops with
    /// its ready tokens kept, [`Transition::sliced`] is set, and the shell continues it
    /// later with [`Event::Continue`], so one wide fan-out cannot hold the engine.
    budget: Cell<u32>,
    /// Most steps one path may run without a wait ([`Limits::steps_without_wait`](crate::Limits)).
    loop_guard: u32,
}

impl<'a> Env<'a> {
    /// An environment at `now` with the default limits.
    pub fn new(now: DateTime<Utc>, calendars: &'a clearflow_time::Calendars) -> Self {
        Env::with_limits(now, calendars, &crate::Limits::default())
    }

    /// An environment at `now` with the step bounds of `limits`.
    pub fn with_limits(
        now: DateTime<Utc>,
        calendars: &'a clearflow_time::Calendars,
        limits: &crate::Limits,
    ) -> Self {
        Env {
            now,
            calendars,
            budget: Cell::new(limits.steps_per_advance.max(1)),
            loop_guard: limits.steps_without_wait.max(1),
        }
    }
}

/// The durable state of one instance. Serialised as JSON in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The instance id.
    pub id: String,
    /// The workflow id.
    pub workflow: String,
    /// Running or ended, and how.
    pub status: Status,
    /// `input`, `vars` and the results of named steps.
    pub data: Map<String, Value>,
    /// Points of execution.
    pub tokens: BTreeMap<u32, Token>,
    /// Open joins of parallel steps.
    pub joins: BTreeMap<u32, JoinFrame>,
    /// Linked instances by link name.
    pub links: BTreeMap<String, Link>,
    /// Signals received before anything waited for them.
    pub signals: Vec<Signal>,
    /// Who completed which task step (for separation of duties).
    pub actors: BTreeMap<String, String>,
    /// Who started the instance.
    pub initiator: Option<String>,
    /// Open human tasks by task number, with their reminder and escalation timers.
    #[serde(default)]
    pub tasks: BTreeMap<u32, OpenTask>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Source of token, frame, timer and link ids.
    pub counter: u32,
    /// Timers computed past the last year their calendar covers (see [`Provisional`]).
    #[serde(default, skip_serializing_if = "Provisional::is_empty")]
    pub provisional: Provisional,
    /// Steps each ready token's path has run since the last outside event, kept only
    /// while the instance is sliced (see [`Event::Continue`]), so the loop guard counts
    /// across slices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub path_steps: BTreeMap<u32, u32>,
}

/// Deadlines computed past the last year a calendar covers: counted on weekends only,
/// so possibly wrong once the next year's holidays are known. [`Event::Recalendar`]
/// recomputes them with the calendars of the moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provisional {
    /// Provisional timers by timer id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timers: BTreeMap<u32, ProvisionalTimer>,
    /// Open tasks whose due date is provisional, by task number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<u32, ProvisionalDue>,
    /// Steps that have computed a provisional deadline (each is reported once).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub reported: std::collections::BTreeSet<String>,
}

impl Provisional {
    /// Whether nothing is or was provisional.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty() && self.tasks.is_empty() && self.reported.is_empty()
    }
}

/// A task's provisional due date and how to compute it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionalDue {
    /// The task step.
    pub step: String,
    /// The time the duration is counted from (the task's creation).
    pub from: DateTime<Utc>,
    /// The duration as written (`15wd`).
    pub span: String,
    /// The provisional due date.
    pub at: DateTime<Utc>,
}

/// One provisional timer and how to compute it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionalTimer {
    /// The waiting token.
    pub token: u32,
    /// The step.
    pub step: String,
    /// The time the duration is counted from.
    pub from: DateTime<Utc>,
    /// The duration as written (`30wd`).
    pub span: String,
    /// The provisional time.
    pub at: DateTime<Utc>,
}

/// Whether an instance runs, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Not ended.
    Running,
    /// Ended through an `end` step or the last step.
    Completed {
        /// The outcome.
        outcome: String,
        /// The output.
        output: Value,
    },
    /// A step failed for good.
    Failed {
        /// The step.
        step: String,
        /// Why.
        error: String,
    },
    /// Cancelled from outside.
    Cancelled {
        /// Why.
        reason: String,
    },
}

impl Status {
    /// The status as a word for the store and listings.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed { .. } => "completed",
            Status::Failed { .. } => "failed",
            Status::Cancelled { .. } => "cancelled",
        }
    }

    /// The outcome of an ended instance, as seen by an instance awaiting it.
    pub fn outcome(&self) -> Option<&str> {
        match self {
            Status::Running => None,
            Status::Completed { outcome, .. } => Some(outcome),
            Status::Failed { .. } => Some("failed"),
            Status::Cancelled { .. } => Some("cancelled"),
        }
    }
}

/// A point of execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// The node it is at.
    pub node: NodeId,
    /// The join frame of the branch it runs in.
    pub frame: Option<u32>,
    /// What it waits for.
    pub wait: Wait,
}

/// What a token waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum Wait {
    /// Nothing: it runs next.
    Ready,
    /// A timer.
    Timer {
        /// Timer id.
        timer: u32,
        /// When it fires.
        at: DateTime<Utc>,
    },
    /// An external event.
    Event {
        /// Event name.
        name: String,
        /// Correlation key.
        key: Option<String>,
        /// Timeout timer.
        timer: Option<u32>,
    },
    /// A linked instance's end.
    Link {
        /// Link name.
        name: String,
        /// Timeout timer.
        timer: Option<u32>,
    },
    /// A plugin call in flight.
    Plugin {
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// The delay before retrying a plugin.
    Retry {
        /// The attempt that will run.
        attempt: u32,
        /// Timer id.
        timer: u32,
    },
    /// A human task.
    Task {
        /// Task number within the instance.
        task: u32,
    },
    /// Its branches' join.
    Join {
        /// Frame id.
        frame: u32,
    },
}

/// An open join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinFrame {
    /// The parallel node.
    pub node: NodeId,
    /// The token that forked and waits.
    pub parent: u32,
    /// Branches arrived.
    pub arrived: u32,
    /// Branches needed.
    pub needed: u32,
}

/// A linked instance as this instance knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Which start of this link is current.
    pub seq: u32,
    /// The linked workflow.
    pub workflow: String,
    /// Its outcome once ended.
    pub outcome: Option<String>,
    /// Its output once ended.
    pub output: Value,
}

/// A buffered signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Event name.
    pub name: String,
    /// Correlation key.
    pub key: Option<String>,
    /// Payload.
    pub data: Value,
}

/// A failed plugin call, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginFailure {
    /// The error class (`transient`, `timeout`, `memory_limit`, …).
    pub class: String,
    /// The message.
    pub message: String,
    /// Whether the retry policy may try again.
    pub retryable: bool,
}

/// Something that happens to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Begin running (the first event of every instance).
    Start,
    /// A timer fell due.
    Timer {
        /// Timer id.
        timer: u32,
    },
    /// An external event.
    Signal {
        /// Event name.
        name: String,
        /// Correlation key.
        #[serde(default)]
        key: Option<String>,
        /// Payload.
        #[serde(default)]
        data: Value,
    },
    /// A linked instance ended.
    LinkEnded {
        /// Link name.
        link: String,
        /// Which start of the link.
        seq: u32,
        /// Its outcome.
        outcome: String,
        /// Its output.
        #[serde(default)]
        output: Value,
    },
    /// A plugin call finished.
    PluginDone {
        /// The token that made the call.
        token: u32,
        /// The attempt.
        attempt: u32,
        /// Output or failure.
        result: Result<Value, PluginFailure>,
    },
    /// A human task was completed.
    TaskCompleted {
        /// The token waiting on it.
        token: u32,
        /// Who completed it.
        actor: String,
        /// The form.
        form: Value,
        /// The task number: the event is ignored when the token waits on another task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<u32>,
    },
    /// A human task was rejected; control goes to the task's `on_reject` step.
    TaskRejected {
        /// The token waiting on it.
        token: u32,
        /// Who rejected it.
        actor: String,
        /// Why.
        reason: String,
        /// The task number: the event is ignored when the token waits on another task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<u32>,
    },
    /// Cancel the instance.
    Cancel {
        /// Why.
        reason: String,
    },
    /// The working-day calendars changed (e.g. the next year's file was added and the
    /// daemon reloaded): recompute every provisional timer with the calendars in [`Env`],
    /// counting from the time it was first counted from.
    Recalendar,
    /// Run on: the last advance ran out of its step budget ([`Transition::sliced`]) with
    /// tokens still ready.
    Continue,
}

/// Work for the shell, to be done in (or, for plugin calls, before) the transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Store a timer.
    ArmTimer {
        /// Timer id within the instance.
        timer: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// Delete a timer.
    CancelTimer {
        /// Timer id.
        timer: u32,
    },
    /// Route keyed events with this name and key to the instance.
    Subscribe {
        /// Event name.
        name: String,
        /// Key.
        key: String,
    },
    /// Stop routing.
    Unsubscribe {
        /// Event name.
        name: String,
        /// Key.
        key: String,
    },
    /// Call a plugin and feed the result back as [`Event::PluginDone`].
    CallPlugin {
        /// The calling token.
        token: u32,
        /// The step.
        step: String,
        /// The plugin.
        plugin: String,
        /// Its input.
        input: Value,
        /// The attempt.
        attempt: u32,
        /// Per-call limit overriding the plugin's.
        timeout_ms: Option<u64>,
    },
    /// Create and start another instance linked to this one.
    StartInstance {
        /// Workflow.
        workflow: String,
        /// Input.
        input: Value,
        /// Link name.
        link: String,
        /// Link sequence number.
        seq: u32,
        /// Not cancelled when this instance is (`on_parent_cancel: abandon`).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        detached: bool,
    },
    /// Queue an email (rendered by the shell).
    QueueMail {
        /// The step.
        step: String,
        /// Template.
        template: String,
        /// Recipients: addresses, or `role:NAME`.
        to: Vec<String>,
        /// Copy.
        cc: Vec<String>,
        /// Blind copy.
        bcc: Vec<String>,
        /// Locale.
        locale: Option<String>,
        /// Template data.
        data: Value,
    },
    /// Create a human task.
    CreateTask {
        /// Task number within the instance.
        task: u32,
        /// The waiting token.
        token: u32,
        /// The step.
        step: String,
        /// Rendered title.
        title: Option<String>,
        /// Candidate role.
        role: Option<String>,
        /// Assignee.
        assignee: Option<String>,
        /// Due date.
        due: Option<DateTime<Utc>>,
        /// Whether the due date was computed past the calendar's last year.
        provisional: bool,
        /// Priority, higher first.
        priority: i32,
        /// Follow-up date.
        follow_up: Option<DateTime<Utc>>,
    },
    /// Close the open task of a token (cancelled branch, escalation).
    CloseTask {
        /// Task number.
        task: u32,
    },
    /// Give an open task to another role (escalation): no assignee, no claim.
    ReassignTask {
        /// Task number.
        task: u32,
        /// The new candidate role.
        role: String,
    },
    /// An open task's due date moved (a provisional date recomputed on new calendars);
    /// its reminders and escalation were re-armed relative to it.
    RescheduleTask {
        /// Task number.
        task: u32,
        /// The new due date.
        due: DateTime<Utc>,
        /// Whether it is still provisional.
        provisional: bool,
    },
    /// A completion or rejection was refused by the engine: the task is open again.
    ReopenTask {
        /// Task number.
        task: u32,
        /// Why the action was refused.
        reasons: Vec<String>,
    },
    /// The instance ended: tell its parent, drop its timers.
    Ended {
        /// Outcome as the parent sees it.
        outcome: String,
        /// Output.
        output: Value,
    },
}

/// Every kind of history entry the engine and the daemon write, so that each has words
/// in the console's catalogues (a test checks both) and no kind is written unlisted (the
/// engine checks its own in debug builds).
pub const HISTORY_KINDS: &[&str] = &[
    "branch_cancelled",
    "deadline_not_recomputed",
    "deadline_provisional",
    "deadline_recomputed",
    "event_ignored",
    "event_rejected",
    "instance_cancelled",
    "instance_completed",
    "instance_failed",
    "instance_started",
    "link_ended",
    "link_started",
    "mail_queued",
    "mail_skipped",
    "plugin_attempt_failed",
    "plugin_called",
    "retry_scheduled",
    "signal_buffered",
    "signal_dropped",
    "signal_received",
    "step_completed",
    "step_skipped",
    "step_started",
    "step_waiting",
    "task_completed",
    "task_escalated",
    "task_reassigned",
    "task_refused",
    "task_rejected",
    "task_reminded",
    "wait_timed_out",
];

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// What happened (`step_completed`, `timer_fired`, …).
    pub kind: String,
    /// The step, when it concerns one.
    pub step: Option<String>,
    /// Details.
    pub detail: Value,
}

/// What one event did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Transition {
    /// Effects to perform.
    pub effects: Vec<Effect>,
    /// History to append.
    pub history: Vec<HistoryEntry>,
    /// Steps executed.
    pub steps: u32,
    /// The step budget ran out with tokens still ready: the instance must be continued
    /// ([`Event::Continue`]) without waiting for anything outside.
    pub sliced: bool,
}

/// Why an instance could not be created.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CreateError {
    /// The input does not satisfy the workflow's input schema.
    #[error("input does not match the schema of `{workflow}`: {}", violations.join("; "))]
    InvalidInput {
        /// The workflow.
        workflow: String,
        /// Every violation.
        violations: Vec<String>,
    },
    /// The input of a concurrently started workflow could not be computed.
    #[error("input of concurrent start `{alias}`: {message}")]
    ConcurrentInput {
        /// The link.
        alias: String,
        /// Why.
        message: String,
    },
}

/// Creates an instance of `wf` with `input`. The returned effects hold the
/// concurrent starts (`on_start`), which the shell must create in the same transaction.
pub fn create(
    wf: &Workflow,
    id: String,
    input: Value,
    initiator: Option<String>,
    now: DateTime<Utc>,
) -> Result<(Instance, Vec<Effect>), CreateError> {
    if let Some(schema) = &wf.input_schema {
        let violations = schema.violations(&input);
        if !violations.is_empty() {
            return Err(CreateError::InvalidInput {
                workflow: wf.id.clone(),
                violations,
            });
        }
    }
    let mut data = Map::new();
    data.insert("input".into(), input);
    data.insert("vars".into(), Value::Object(Map::new()));
    let mut inst = Instance {
        id,
        workflow: wf.id.clone(),
        status: Status::Running,
        data,
        tokens: BTreeMap::new(),
        joins: BTreeMap::new(),
        links: BTreeMap::new(),
        signals: Vec::new(),
        actors: BTreeMap::new(),
        initiator,
        tasks: BTreeMap::new(),
        started_at: now,
        counter: 0,
        provisional: Provisional::default(),
        path_steps: BTreeMap::new(),
    };
    let mut effects = Vec::new();
    for s in &wf.on_start {
        let input = match &s.input {
            Some(t) => {
                t.render(&context(&inst, now))
                    .map_err(|message| CreateError::ConcurrentInput {
                        alias: s.alias.clone(),
                        message,
                    })?
            }
            None => Value::Object(Map::new()),
        };
        let seq = inst.next_id();
        inst.links.insert(
            s.alias.clone(),
            Link {
                seq,
                workflow: s.workflow.clone(),
                outcome: None,
                output: Value::Null,
            },
        );
        effects.push(Effect::StartInstance {
            workflow: s.workflow.clone(),
            input,
            link: s.alias.clone(),
            seq,
            detached: false,
        });
    }
    Ok((inst, effects))
}

impl Instance {
    fn next_id(&mut self) -> u32 {
        self.counter += 1;
        self.counter
    }

    /// Whether the instance has ended.
    pub fn ended(&self) -> bool {
        self.status != Status::Running
    }
}

/// The expression context of an instance (over a copy of its data: for one-off use).
fn context(inst: &Instance, now: DateTime<Utc>) -> minijinja::Value {
    context_over(Arc::new(inst.data.clone()), inst, now)
}

/// The expression context of an instance whose data is `data`, shared, not copied.
fn context_over(
    data: Arc<Map<String, Value>>,
    inst: &Instance,
    now: DateTime<Utc>,
) -> minijinja::Value {
    let instance = json!({"id": inst.id, "workflow": inst.workflow, "started_at": inst.started_at.to_rfc3339(), "initiator": inst.initiator});
    let links: Map<String, Value> = inst
        .links
        .iter()
        .map(|(k, l)| {
            (
                k.clone(),
                json!({"workflow": l.workflow, "ended": l.outcome.is_some(), "outcome": l.outcome, "output": l.output}),
            )
        })
        .collect();
    context::StepContext::value(data, &instance, &now.to_rfc3339(), &Value::Object(links))
}

/// Why a workflow's `identity_read:` rule refuses a read through one of its instances.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityReadRefused {
    /// The workflow allows none (`identity_read: { allowed: false }`).
    #[error("workflow `{workflow}` allows no read of the reporter's identity through its cases")]
    Never {
        /// The workflow.
        workflow: String,
    },
    /// The approval step has not been done, or did not grant the read.
    #[error(
        "reading the reporter's identity through case {instance} needs the approval of step `{step}`, which has not granted it"
    )]
    NotApproved {
        /// The instance.
        instance: String,
        /// The deciding step.
        step: String,
    },
}

/// The approval a read rests on: the deciding step and who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityApproval {
    /// The deciding task step.
    pub step: String,
    /// Who completed it.
    pub by: String,
}

/// Whether `wf`'s `identity_read:` rule lets the reporter's identity be read through
/// `inst`: `Ok(None)` when the permission alone decides, `Ok(Some(approval))` when an
/// approval granted it. Pure; the runtime records the answer with the read.
pub fn identity_read_allowed(
    wf: &Workflow,
    inst: &Instance,
    now: DateTime<Utc>,
) -> Result<Option<IdentityApproval>, IdentityReadRefused> {
    match &wf.identity_read {
        crate::workflow::IdentityRead::WithPermission => Ok(None),
        crate::workflow::IdentityRead::Never => Err(IdentityReadRefused::Never {
            workflow: wf.id.clone(),
        }),
        crate::workflow::IdentityRead::Approved { approval, granted } => {
            let refused = || IdentityReadRefused::NotApproved {
                instance: inst.id.clone(),
                step: approval.clone(),
            };
            let by = inst.actors.get(approval).ok_or_else(refused)?;
            if granted.truthy(&context(inst, now)).unwrap_or(false) {
                Ok(Some(IdentityApproval {
                    step: approval.clone(),
                    by: by.clone(),
                }))
            } else {
                Err(refused())
            }
        }
    }
}

/// The entry of `inst` in a notification list, or `None` when the list's filter
/// leaves it out. Entries carry `id`, `workflow`, `status`, `started_at`, `waiting_at`
/// (the steps it waits at, in `wf`) and the list's fields.
pub fn list_entry(
    wf: &Workflow,
    inst: &Instance,
    q: &crate::workflow::ListQuery,
    now: DateTime<Utc>,
) -> Result<Option<Value>, String> {
    let ctx = context(inst, now);
    if let Some((filter, _)) = &q.filter
        && !filter.truthy(&ctx)?
    {
        return Ok(None);
    }
    let mut waiting_at: Vec<&str> = inst
        .tokens
        .values()
        .filter(|t| !matches!(t.wait, Wait::Ready | Wait::Join { .. }))
        .filter_map(|t| wf.nodes.get(t.node as usize).map(|n| n.id.as_str()))
        .collect();
    waiting_at.sort_unstable();
    waiting_at.dedup();
    let mut entry = json!({
        "id": inst.id,
        "workflow": inst.workflow,
        "status": inst.status.name(),
        "started_at": inst.started_at.to_rfc3339(),
        "waiting_at": waiting_at,
    });
    for (name, e, _) in &q.fields {
        let v = e
            .eval(&ctx)
            .map_err(|err| format!("field `{name}`: {err}"))?;
        entry[name.as_str()] = v;
    }
    Ok(Some(entry))
}

struct Run<'a> {
    wf: &'a Workflow,
    env: &'a Env<'a>,
    inst: &'a mut Instance,
    out: Transition,
    /// The instance data while a step context shares it (`inst.data` is then empty).
    shared: Option<Arc<Map<String, Value>>>,
    /// Writes to the data made while it was shared, applied before the next context.
    pending: Vec<Write>,
    /// Steps run by each token's path since the last outside event (see
    /// [`Limits::steps_without_wait`](crate::Limits)).
    path_steps: HashMap<u32, u32>,
}

/// A write to the instance data.
enum Write {
    /// A named step's result.
    Result(String, Value),
    /// Variables set by a `set` step.
    Vars(Map<String, Value>),
}

impl Write {
    fn apply(self, data: &mut Map<String, Value>) {
        match self {
            Write::Result(step, value) => {
                data.insert(step, value);
            }
            Write::Vars(set) => {
                if let Some(Value::Object(vars)) = data.get_mut("vars") {
                    vars.extend(set);
                }
            }
        }
    }
}

/// The timer a wait holds, if it holds one.
fn wait_timer(wait: &Wait) -> Option<u32> {
    match wait {
        Wait::Timer { timer, .. } | Wait::Retry { timer, .. } => Some(*timer),
        Wait::Event { timer, .. } | Wait::Link { timer, .. } => *timer,
        _ => None,
    }
}

/// Applies `event` to `inst` and runs it forward to its next wait.
pub fn apply(wf: &Workflow, inst: &mut Instance, event: Event, env: &Env<'_>) -> Transition {
    let mut run = Run {
        wf,
        env,
        inst,
        out: Transition::default(),
        shared: None,
        pending: Vec::new(),
        path_steps: HashMap::new(),
    };
    // A continuation counts on from where the slice stopped; an outside event starts
    // every path's count afresh, unless it is sliced too (then the larger count stays).
    let carried = std::mem::take(&mut run.inst.path_steps);
    if matches!(event, Event::Continue) {
        run.path_steps.extend(carried.iter().map(|(t, n)| (*t, *n)));
    }
    if run.inst.ended() {
        run.log(
            "event_ignored",
            None,
            json!({"reason": "instance has ended", "event": event}),
        );
        return run.out;
    }
    run.event(event);
    run.drive();
    run.forget_settled_provisional();
    run.restore_data();
    if run.out.sliced && !run.inst.ended() {
        // Kept for the continuation, for the tokens still alive: the larger count of
        // this event's and the slice's before it.
        let mut keep = carried;
        for (t, n) in run.path_steps {
            let e = keep.entry(t).or_default();
            *e = (*e).max(n);
        }
        keep.retain(|t, _| run.inst.tokens.contains_key(t));
        run.inst.path_steps = keep;
    }
    run.out
}

/// Applies `event`, then continues each slice ([`Event::Continue`], a fresh step budget
/// every time) until the instance waits or ends: what the shell does over several rounds,
/// in one call, with every slice's effects and history in order.
pub fn apply_to_wait(
    wf: &Workflow,
    inst: &mut Instance,
    event: Event,
    now: DateTime<Utc>,
    calendars: &clearflow_time::Calendars,
    limits: &crate::Limits,
) -> Transition {
    let mut all = apply(wf, inst, event, &Env::with_limits(now, calendars, limits));
    while all.sliced {
        let t = apply(
            wf,
            inst,
            Event::Continue,
            &Env::with_limits(now, calendars, limits),
        );
        all.effects.extend(t.effects);
        all.history.extend(t.history);
        all.steps += t.steps;
        all.sliced = t.sliced;
    }
    all
}

enum Flow {
    /// Continue at the node's `next`.
    Next,
    /// Continue at this node.
    Jump(NodeId),
    /// The token waits.
    Wait,
    /// The token was consumed (joined, ended).
    Gone,
}

impl<'a> Run<'a> {
    /// The expression context for the next step, sharing the instance data.
    fn context(&mut self) -> minijinja::Value {
        self.flush();
        let data = match &self.shared {
            Some(data) => Arc::clone(data),
            None => {
                let data = Arc::new(std::mem::take(&mut self.inst.data));
                self.shared = Some(Arc::clone(&data));
                data
            }
        };
        context_over(data, self.inst, self.env.now)
    }

    /// The instance data as of the last context (pending writes not included).
    fn data(&self) -> &Map<String, Value> {
        self.shared.as_deref().unwrap_or(&self.inst.data)
    }

    /// Writes to the data, or queues the write while a context may still read it.
    fn write(&mut self, w: Write) {
        if self.shared.is_some() {
            self.pending.push(w);
        } else {
            w.apply(&mut self.inst.data);
        }
    }

    /// Applies the pending writes. The last context is gone by now, so taking the data
    /// back does not copy it.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.restore_data();
    }

    /// Puts the data back into the instance with every write applied.
    fn restore_data(&mut self) {
        if let Some(data) = self.shared.take() {
            self.inst.data = Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone());
        }
        for w in std::mem::take(&mut self.pending) {
            w.apply(&mut self.inst.data);
        }
    }

    fn log(&mut self, kind: &str, step: Option<&str>, detail: Value) {
        debug_assert!(
            HISTORY_KINDS.contains(&kind),
            "history kind `{kind}` is not in HISTORY_KINDS"
        );
        self.out.history.push(HistoryEntry {
            kind: kind.to_owned(),
            step: step.map(str::to_owned),
            detail,
        });
    }

    fn node(&self, token: u32) -> &'a Node {
        self.wf.node(self.inst.tokens[&token].node)
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start if !self.inst.tokens.is_empty() => {
                // A running instance always has a token; a repeated start is a duplicate.
                self.log(
                    "event_ignored",
                    None,
                    json!({"reason": "instance already started"}),
                );
            }
            Event::Start => {
                self.log(
                    "instance_started",
                    None,
                    json!({"workflow": self.wf.id, "version": self.wf.hash}),
                );
                let id = self.inst.next_id();
                match self.wf.entry() {
                    Next::Node(n) => {
                        self.inst.tokens.insert(
                            id,
                            Token {
                                node: n,
                                frame: None,
                                wait: Wait::Ready,
                            },
                        );
                    }
                    _ => self.complete("completed".into(), Value::Null),
                }
            }
            Event::Timer { timer } => self.timer(timer),
            Event::Signal { name, key, data } => self.signal(name, key, data),
            Event::LinkEnded {
                link,
                seq,
                outcome,
                output,
            } => {
                let Some(l) = self.inst.links.get_mut(&link) else {
                    self.log(
                        "event_ignored",
                        None,
                        json!({"reason": "unknown link", "link": link}),
                    );
                    return;
                };
                if l.seq != seq {
                    self.log(
                        "event_ignored",
                        None,
                        json!({"reason": "stale link", "link": link}),
                    );
                    return;
                }
                l.outcome = Some(outcome.clone());
                l.output = output.clone();
                self.log(
                    "link_ended",
                    None,
                    json!({"link": link, "outcome": outcome}),
                );
                let waiting: Vec<u32> = self
                    .inst
                    .tokens
                    .iter()
                    .filter(|(_, t)| matches!(&t.wait, Wait::Link { name, .. } if *name == link))
                    .map(|(id, _)| *id)
                    .collect();
                for t in waiting {
                    if let Wait::Link {
                        timer: Some(timer), ..
                    } = self.inst.tokens[&t].wait
                    {
                        self.out.effects.push(Effect::CancelTimer { timer });
                    }
                    let result = json!({"outcome": outcome, "output": output});
                    self.finish_step(t, Some(result), Flow::Next);
                }
            }
            Event::PluginDone {
                token,
                attempt,
                result,
            } => self.plugin_done(token, attempt, result),
            Event::TaskCompleted {
                token,
                actor,
                form,
                task,
            } => self.task_action(token, task, actor, TaskAction::Complete { form }),
            Event::TaskRejected {
                token,
                actor,
                reason,
                task,
            } => self.task_action(token, task, actor, TaskAction::Reject { reason }),
            Event::Cancel { reason } => {
                self.log("instance_cancelled", None, json!({"reason": reason}));
                self.end(Status::Cancelled { reason });
            }
            Event::Recalendar => self.recalendar(),
            // The ready tokens run in `drive`.
            Event::Continue => {}
        }
    }

    /// Forgets provisional timers nothing waits on any more (fired, cancelled, ended).
    fn forget_settled_provisional(&mut self) {
        let tokens = &self.inst.tokens;
        self.inst.provisional.timers.retain(|timer, p| {
            tokens
                .get(&p.token)
                .is_some_and(|t| wait_timer(&t.wait) == Some(*timer))
        });
    }

    /// Recomputes every provisional timer and task due date: a timer whose time changed
    /// is cancelled and armed again at the new time (a task's reminders and escalation
    /// move with its due date); one the calendars now cover is no longer provisional.
    fn recalendar(&mut self) {
        self.recalendar_tasks();
        let timers: Vec<(u32, ProvisionalTimer)> = self
            .inst
            .provisional
            .timers
            .iter()
            .map(|(t, p)| (*t, p.clone()))
            .collect();
        for (timer, p) in timers {
            let still_waits = self
                .inst
                .tokens
                .get(&p.token)
                .is_some_and(|t| wait_timer(&t.wait) == Some(timer));
            if !still_waits {
                self.inst.provisional.timers.remove(&timer);
                continue;
            }
            let Some((at, provisional)) =
                self.recompute(&p.step, &p.span, p.from, json!({"timer": timer}))
            else {
                continue;
            };
            self.inst.provisional.timers.remove(&timer);
            let mut current = timer;
            if at != p.at {
                self.out.effects.push(Effect::CancelTimer { timer });
                current = self.arm(at);
                if let Some(t) = self.inst.tokens.get_mut(&p.token) {
                    match &mut t.wait {
                        Wait::Timer { timer, at: old } => {
                            *timer = current;
                            *old = at;
                        }
                        Wait::Event { timer, .. } | Wait::Link { timer, .. } => {
                            *timer = Some(current)
                        }
                        _ => {}
                    }
                }
            }
            if provisional {
                self.inst
                    .provisional
                    .timers
                    .insert(current, ProvisionalTimer { at, ..p.clone() });
            }
            self.log(
                "deadline_recomputed",
                Some(&p.step),
                json!({"span": p.span, "was": p.at, "until": at, "provisional": provisional}),
            );
        }
    }

    /// Computes a deadline `span` from now and arms a timer for it, remembering the timer
    /// when the deadline is provisional; the first provisional deadline of a step is
    /// recorded in the history as `deadline_provisional`.
    fn arm_deadline(
        &mut self,
        token: u32,
        span: &clearflow_time::Span,
    ) -> Result<(u32, DateTime<Utc>, bool), String> {
        let (at, provisional) = self.deadline(span)?;
        let timer = self.arm(at);
        if provisional {
            let step = self.node(token).id.clone();
            self.inst.provisional.timers.insert(
                timer,
                ProvisionalTimer {
                    token,
                    step: step.clone(),
                    from: self.env.now,
                    span: span.to_string(),
                    at,
                },
            );
            self.report_provisional(&step, span, at);
        }
        Ok((timer, at, provisional))
    }

    /// `span` (as written) counted again from `from` with the calendars of the moment.
    /// On failure the old time stays (a later reload may fix the calendar) and the
    /// history says why, with `what` naming the timer or task.
    fn recompute(
        &mut self,
        step: &str,
        span: &str,
        from: DateTime<Utc>,
        what: Value,
    ) -> Option<(DateTime<Utc>, bool)> {
        let computed = span
            .parse::<clearflow_time::Span>()
            .map_err(|e| e.to_string())
            .and_then(|span| self.deadline_from(from, &span));
        match computed {
            Ok(d) => Some(d),
            Err(e) => {
                let mut detail = what;
                detail["error"] = json!(e);
                self.log("deadline_not_recomputed", Some(step), detail);
                None
            }
        }
    }

    /// Records the first provisional deadline of `step` in the history.
    fn report_provisional(&mut self, step: &str, span: &clearflow_time::Span, at: DateTime<Utc>) {
        if self.inst.provisional.reported.insert(step.to_owned()) {
            self.log(
                "deadline_provisional",
                Some(step),
                json!({"span": span.to_string(), "until": at, "calendar": self.wf.calendar}),
            );
        }
    }

    fn stale(&mut self, what: &str, token: u32) {
        self.log(
            "event_ignored",
            None,
            json!({"reason": format!("no {what} waits on token {token}")}),
        );
    }

    fn timer(&mut self, timer: u32) {
        if let Some(task) = self.task_of_timer(timer) {
            return self.task_timer(task, timer);
        }
        let found = self.inst.tokens.iter().find_map(|(id, t)| match &t.wait {
            Wait::Timer { timer: x, .. } | Wait::Retry { timer: x, .. } if *x == timer => Some(*id),
            Wait::Event { timer: Some(x), .. } | Wait::Link { timer: Some(x), .. }
                if *x == timer =>
            {
                Some(*id)
            }
            _ => None,
        });
        let Some(token) = found else {
            // A timer whose wait already ended (e.g. the event came first): nothing to do.
            return self.log(
                "event_ignored",
                None,
                json!({"reason": format!("nothing waits on timer {timer}")}),
            );
        };
        let step = self.node(token).id.clone();
        match self.inst.tokens[&token].wait.clone() {
            Wait::Timer { .. } => self.finish_step(token, None, Flow::Next),
            Wait::Retry { attempt, .. } => self.call_plugin(token, attempt),
            Wait::Event { name, key, .. } => {
                if let Some(key) = key {
                    self.out.effects.push(Effect::Unsubscribe {
                        name: name.clone(),
                        key,
                    });
                }
                self.log("wait_timed_out", Some(&step), json!({"event": name}));
                let on_timeout = match &self.node(token).kind {
                    NodeKind::Wait(WaitStep::Event { on_timeout, .. }) => *on_timeout,
                    _ => None,
                };
                let flow = on_timeout.map_or(Flow::Next, Flow::Jump);
                self.finish_step(token, Some(json!({"timed_out": true})), flow);
            }
            Wait::Link { name, .. } => {
                self.log("wait_timed_out", Some(&step), json!({"link": name}));
                let on_timeout = match &self.node(token).kind {
                    NodeKind::Await { on_timeout, .. } => *on_timeout,
                    _ => None,
                };
                let flow = on_timeout.map_or(Flow::Next, Flow::Jump);
                self.finish_step(token, Some(json!({"timed_out": true})), flow);
            }
            _ => {}
        }
    }

    fn signal(&mut self, name: String, key: Option<String>, data: Value) {
        let found = self.inst.tokens.iter().find_map(|(id, t)| match &t.wait {
            Wait::Event {
                name: n, key: k, ..
            } if *n == name && (k.is_none() || *k == key) => Some(*id),
            _ => None,
        });
        match found {
            Some(token) => {
                let Wait::Event {
                    timer,
                    key: waited_key,
                    ..
                } = self.inst.tokens[&token].wait.clone()
                else {
                    return;
                };
                if let Some(timer) = timer {
                    self.out.effects.push(Effect::CancelTimer { timer });
                }
                if let Some(k) = waited_key {
                    self.out.effects.push(Effect::Unsubscribe {
                        name: name.clone(),
                        key: k,
                    });
                }
                let step = self.node(token).id.clone();
                self.log(
                    "signal_received",
                    Some(&step),
                    json!({"event": name, "key": key}),
                );
                self.finish_step(token, Some(data), Flow::Next);
            }
            None => {
                self.log("signal_buffered", None, json!({"event": name, "key": key}));
                self.inst.signals.push(Signal { name, key, data });
                if self.inst.signals.len() > MAX_BUFFERED_SIGNALS {
                    let dropped = self.inst.signals.remove(0);
                    self.log(
                        "signal_dropped",
                        None,
                        json!({"event": dropped.name, "key": dropped.key}),
                    );
                }
            }
        }
    }

    fn plugin_done(&mut self, token: u32, attempt: u32, result: Result<Value, PluginFailure>) {
        let Some(tok) = self.inst.tokens.get(&token) else {
            return self.stale("plugin call", token);
        };
        if tok.wait != (Wait::Plugin { attempt }) {
            return self.stale("plugin call", token);
        }
        let node = self.node(token);
        let step = node.id.clone();
        let NodeKind::Plugin(p) = &node.kind else {
            return;
        };
        match result {
            Ok(output) => {
                if let Some(schema) = &p.output_schema {
                    let violations = schema.violations(&output);
                    if !violations.is_empty() {
                        let msg = format!(
                            "plugin `{}` returned output that does not match the step's `output` schema: {}",
                            p.plugin,
                            violations.join("; ")
                        );
                        self.log(
                            "plugin_attempt_failed",
                            Some(&step),
                            json!({"attempt": attempt, "class": "invalid_output", "message": msg}),
                        );
                        return self.fail(&step, msg);
                    }
                }
                self.finish_step(token, Some(output), Flow::Next);
            }
            Err(f) => {
                self.log(
                    "plugin_attempt_failed",
                    Some(&step),
                    json!({"attempt": attempt, "class": f.class, "message": f.message}),
                );
                if f.retryable && attempt < p.retry.attempts {
                    let unit = jitter_unit(&self.inst.id, &step, attempt);
                    let delay = p.retry.delay(attempt + 1, unit);
                    let at = self.env.now + chrono::TimeDelta::from_std(delay).unwrap_or_default();
                    let timer = self.inst.next_id();
                    self.out.effects.push(Effect::ArmTimer { timer, at });
                    if let Some(t) = self.inst.tokens.get_mut(&token) {
                        t.wait = Wait::Retry {
                            attempt: attempt + 1,
                            timer,
                        };
                    }
                    self.log(
                        "retry_scheduled",
                        Some(&step),
                        json!({"attempt": attempt + 1, "at": at}),
                    );
                } else {
                    let why = if f.retryable {
                        "attempts exhausted"
                    } else {
                        "not retryable"
                    };
                    let msg = format!(
                        "plugin `{}` failed ({}, {why}): {}",
                        p.plugin, f.class, f.message
                    );
                    self.fail(&step, msg);
                }
            }
        }
    }

    fn call_plugin(&mut self, token: u32, attempt: u32) {
        let node = self.node(token);
        let step = node.id.clone();
        let NodeKind::Plugin(p) = &node.kind else {
            return;
        };
        let ctx = self.context();
        match p.input.render(&ctx) {
            Ok(input) => {
                let effect = Effect::CallPlugin {
                    token,
                    step: step.clone(),
                    plugin: p.plugin.clone(),
                    input,
                    attempt,
                    timeout_ms: p
                        .timeout
                        .and_then(|t| t.exact())
                        .map(|d| d.num_milliseconds().max(1) as u64),
                };
                self.out.effects.push(effect);
                self.set_wait(token, Wait::Plugin { attempt });
                self.log(
                    "plugin_called",
                    Some(&step),
                    json!({"plugin": p.plugin, "attempt": attempt}),
                );
            }
            Err(e) => self.fail(&step, format!("computing the plugin input: {e}")),
        }
    }

    /// Runs every ready token until all wait or the instance ends.
    fn drive(&mut self) {
        while !self.inst.ended() {
            let Some(token) = self
                .inst
                .tokens
                .iter()
                .find(|(_, t)| t.wait == Wait::Ready)
                .map(|(id, _)| *id)
            else {
                break;
            };
            let left = self.env.budget.get();
            if left == 0 {
                self.out.sliced = true;
                break;
            }
            let steps = self.path_steps.get(&token).copied().unwrap_or(0) + 1;
            let guard = self.env.loop_guard;
            if steps > guard {
                let step = self.node(token).id.clone();
                self.fail(
                    &step,
                    format!(
                        "more than {guard} steps without waiting: the workflow loops without end (limits.steps_without_wait)"
                    ),
                );
                break;
            }
            self.env.budget.set(left - 1);
            self.path_steps.insert(token, steps);
            self.execute(token);
        }
    }

    fn execute(&mut self, token: u32) {
        let wf = self.wf;
        let node = wf.node(self.inst.tokens[&token].node);
        let step = node.id.as_str();
        let ctx = self.context();
        if let Some(cond) = &node.condition {
            match cond.truthy(&ctx) {
                Ok(true) => {}
                Ok(false) => {
                    self.log("step_skipped", Some(step), Value::Null);
                    self.out.steps += 1;
                    return self.move_token(token, Flow::Next);
                }
                Err(e) => return self.fail(step, format!("condition: {e}")),
            }
        }
        let flow = match &node.kind {
            NodeKind::Set(vars) => {
                let mut set = Map::new();
                for (k, t) in vars {
                    match t.render(&ctx) {
                        Ok(v) => {
                            set.insert(k.clone(), v);
                        }
                        Err(e) => return self.fail(step, format!("setting `{k}`: {e}")),
                    }
                }
                self.write(Write::Vars(set.clone()));
                self.done(token, Some(Value::Object(set)), Flow::Next)
            }
            NodeKind::Goto(to) => self.done(token, None, Flow::Jump(*to)),
            NodeKind::Switch(cases) => {
                let mut chosen = None;
                for (i, (when, to)) in cases.iter().enumerate() {
                    let hit = match when {
                        None => true,
                        Some(w) => match w.truthy(&ctx) {
                            Ok(b) => b,
                            Err(e) => return self.fail(step, format!("case {}: {e}", i + 1)),
                        },
                    };
                    if hit {
                        chosen = Some((i, *to));
                        break;
                    }
                }
                match chosen {
                    Some((i, to)) => {
                        let target = wf.node(to).id.clone();
                        self.done(
                            token,
                            Some(json!({"case": i + 1, "goto": target})),
                            Flow::Jump(to),
                        )
                    }
                    None => self.done(token, Some(json!({"case": null})), Flow::Next),
                }
            }
            NodeKind::End {
                outcome,
                computed,
                output,
            } => {
                let output = match output.as_ref().map(|t| t.render(&ctx)).transpose() {
                    Ok(v) => v.unwrap_or(Value::Null),
                    Err(e) => return self.fail(step, format!("computing the output: {e}")),
                };
                let outcome = match computed.as_ref().map(|t| t.render(&ctx)).transpose() {
                    Ok(Some(Value::String(s))) if !s.trim().is_empty() => s,
                    Ok(Some(Value::Null | Value::String(_))) => {
                        return self
                            .fail(step, format!("the outcome `{outcome}` computed to nothing"));
                    }
                    Ok(Some(other)) => other.to_string(),
                    Ok(None) => outcome.clone(),
                    Err(e) => return self.fail(step, format!("computing the outcome: {e}")),
                };
                self.log("step_completed", Some(step), json!({"outcome": outcome}));
                self.out.steps += 1;
                self.inst.tokens.remove(&token);
                self.complete(outcome.clone(), output);
                Flow::Gone
            }
            NodeKind::Wait(w) => match self.wait(token, node, w, &ctx) {
                Ok(flow) => flow,
                Err(e) => return self.fail(step, e),
            },
            NodeKind::Await { link, timeout, .. } => {
                let Some(l) = self.inst.links.get(link) else {
                    return self.fail(step, format!("link `{link}` was never started"));
                };
                match &l.outcome {
                    Some(outcome) => {
                        let result = json!({"outcome": outcome, "output": l.output});
                        self.done(token, Some(result), Flow::Next)
                    }
                    None => {
                        let timer = match timeout {
                            Some(span) => match self.arm_deadline(token, span) {
                                Ok((timer, _, _)) => Some(timer),
                                Err(e) => return self.fail(step, e),
                            },
                            None => None,
                        };
                        self.set_wait(
                            token,
                            Wait::Link {
                                name: link.clone(),
                                timer,
                            },
                        );
                        self.log("step_waiting", Some(step), json!({"link": link}));
                        Flow::Wait
                    }
                }
            }
            NodeKind::Start {
                workflow,
                input,
                wait,
                alias,
                detached,
            } => {
                let input = match input.as_ref().map(|t| t.render(&ctx)).transpose() {
                    Ok(v) => v.unwrap_or_else(|| Value::Object(Map::new())),
                    Err(e) => {
                        return self
                            .fail(step, format!("computing the input of `{workflow}`: {e}"));
                    }
                };
                let seq = self.inst.next_id();
                self.inst.links.insert(
                    alias.clone(),
                    Link {
                        seq,
                        workflow: workflow.clone(),
                        outcome: None,
                        output: Value::Null,
                    },
                );
                self.out.effects.push(Effect::StartInstance {
                    workflow: workflow.clone(),
                    input,
                    link: alias.clone(),
                    seq,
                    detached: *detached,
                });
                self.log(
                    "link_started",
                    Some(step),
                    json!({"workflow": workflow, "link": alias}),
                );
                if *wait {
                    self.set_wait(
                        token,
                        Wait::Link {
                            name: alias.clone(),
                            timer: None,
                        },
                    );
                    Flow::Wait
                } else {
                    self.done(
                        token,
                        Some(json!({"link": alias, "workflow": workflow})),
                        Flow::Next,
                    )
                }
            }
            NodeKind::Plugin(_) => {
                self.call_plugin(token, 1);
                Flow::Wait
            }
            NodeKind::Notify(n) => {
                let render_list = |list: &[Recipient]| -> Result<Vec<String>, String> {
                    let mut out = Vec::new();
                    for r in list {
                        match r {
                            Recipient::Role(role) => out.push(format!("role:{role}")),
                            Recipient::Expr(t) => match t.render(&ctx)? {
                                Value::String(s) if !s.trim().is_empty() => out.push(s),
                                Value::Array(items) => out.extend(
                                    items
                                        .into_iter()
                                        .filter_map(|v| v.as_str().map(str::to_owned)),
                                ),
                                Value::Null | Value::String(_) => {}
                                other => {
                                    return Err(format!(
                                        "a recipient must be an address or a list of addresses, not {other}"
                                    ));
                                }
                            },
                        }
                    }
                    Ok(out)
                };
                let lists = (render_list(&n.to), render_list(&n.cc), render_list(&n.bcc));
                let (to, cc, bcc) = match lists {
                    (Ok(a), Ok(b), Ok(c)) => (a, b, c),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                        return self.fail(step, format!("recipients: {e}"));
                    }
                };
                let data = match n.data.as_ref().map(|t| t.render(&ctx)).transpose() {
                    Ok(v) => v.unwrap_or_else(|| Value::Object(Map::new())),
                    Err(e) => return self.fail(step, format!("template data: {e}")),
                };
                let locale = match n.locale.as_ref().map(|t| t.render(&ctx)).transpose() {
                    Ok(v) => v.and_then(|v| v.as_str().map(str::to_owned)),
                    Err(e) => return self.fail(step, format!("locale: {e}")),
                };
                let recipients = to.len() + cc.len() + bcc.len();
                self.out.effects.push(Effect::QueueMail {
                    step: step.to_owned(),
                    template: n.template.clone(),
                    to,
                    cc,
                    bcc,
                    locale,
                    data,
                });
                self.done(
                    token,
                    Some(json!({"queued": true, "recipients": recipients})),
                    Flow::Next,
                )
            }
            NodeKind::Task(t) => match self.create_task(token, node, t, &ctx) {
                Ok(flow) => flow,
                Err(e) => return self.fail(step, e),
            },
            NodeKind::Parallel { branches, join } => {
                let frame = self.inst.next_id();
                let needed = match join {
                    Join::All => branches.len() as u32,
                    Join::Count(n) => *n,
                };
                self.inst.joins.insert(
                    frame,
                    JoinFrame {
                        node: self.inst.tokens[&token].node,
                        parent: token,
                        arrived: 0,
                        needed,
                    },
                );
                self.set_wait(token, Wait::Join { frame });
                self.log(
                    "step_started",
                    Some(step),
                    json!({"branches": branches.len(), "needed": needed}),
                );
                let forked_at = self.path_steps.get(&token).copied().unwrap_or(0);
                for b in branches {
                    let id = self.inst.next_id();
                    self.path_steps.insert(id, forked_at);
                    self.inst.tokens.insert(
                        id,
                        Token {
                            node: 0,
                            frame: Some(frame),
                            wait: Wait::Ready,
                        },
                    );
                    match b {
                        Next::Node(n) => {
                            if let Some(t) = self.inst.tokens.get_mut(&id) {
                                t.node = *n;
                            }
                        }
                        _ => self.arrive(id, frame),
                    }
                }
                Flow::Wait
            }
        };
        self.move_token(token, flow);
    }

    fn wait(
        &mut self,
        token: u32,
        node: &Node,
        w: &WaitStep,
        ctx: &minijinja::Value,
    ) -> Result<Flow, String> {
        let step = node.id.as_str();
        match w {
            WaitStep::For(span) => {
                let (timer, at, provisional) = self.arm_deadline(token, span)?;
                self.set_wait(token, Wait::Timer { timer, at });
                self.log(
                    "step_waiting",
                    Some(step),
                    json!({"until": at, "provisional": provisional}),
                );
                Ok(Flow::Wait)
            }
            WaitStep::Until(e) => {
                let v = e.eval(ctx)?;
                let at = parse_time(&v, self.wf.timezone).ok_or_else(|| {
                    format!(
                        "`until` gave {v}, which is not a date (YYYY-MM-DD) or an RFC 3339 time"
                    )
                })?;
                if at <= self.env.now {
                    return Ok(self.done(token, None, Flow::Next));
                }
                let timer = self.arm(at);
                self.set_wait(token, Wait::Timer { timer, at });
                self.log("step_waiting", Some(step), json!({"until": at}));
                Ok(Flow::Wait)
            }
            WaitStep::Event {
                name, key, timeout, ..
            } => {
                let key = match key {
                    Some(k) => match k.eval(ctx)? {
                        Value::Null => return Err(format!("the key of event `{name}` is null")),
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    },
                    None => None,
                };
                let buffered = self
                    .inst
                    .signals
                    .iter()
                    .position(|s| s.name == *name && (key.is_none() || s.key == key));
                if let Some(i) = buffered {
                    let s = self.inst.signals.remove(i);
                    self.log(
                        "signal_received",
                        Some(step),
                        json!({"event": name, "key": s.key, "buffered": true}),
                    );
                    return Ok(self.done(token, Some(s.data), Flow::Next));
                }
                let timer = match timeout {
                    Some(span) => Some(self.arm_deadline(token, span)?.0),
                    None => None,
                };
                if let Some(k) = &key {
                    self.out.effects.push(Effect::Subscribe {
                        name: name.clone(),
                        key: k.clone(),
                    });
                }
                self.set_wait(
                    token,
                    Wait::Event {
                        name: name.clone(),
                        key: key.clone(),
                        timer,
                    },
                );
                self.log(
                    "step_waiting",
                    Some(step),
                    json!({"event": name, "key": key}),
                );
                Ok(Flow::Wait)
            }
        }
    }

    fn deadline(&self, span: &clearflow_time::Span) -> Result<(DateTime<Utc>, bool), String> {
        self.deadline_from(self.env.now, span)
    }

    /// `span` after (or, negative, before) `from`, on the workflow's calendar.
    fn deadline_from(
        &self,
        from: DateTime<Utc>,
        span: &clearflow_time::Span,
    ) -> Result<(DateTime<Utc>, bool), String> {
        let cal = self
            .wf
            .calendar
            .as_deref()
            .and_then(|c| self.env.calendars.get(c));
        if self.wf.calendar.is_some()
            && cal.is_none()
            && span.unit() == clearflow_time::Unit::WorkingDays
        {
            return Err(format!(
                "calendar `{}` is not loaded",
                self.wf.calendar.as_deref().unwrap_or_default()
            ));
        }
        clearflow_time::add(from, span, self.wf.timezone, cal)
            .map(|d| (d.at, d.provisional))
            .map_err(|e| e.to_string())
    }

    fn arm(&mut self, at: DateTime<Utc>) -> u32 {
        let timer = self.inst.next_id();
        self.out.effects.push(Effect::ArmTimer { timer, at });
        timer
    }

    fn set_wait(&mut self, token: u32, wait: Wait) {
        if let Some(t) = self.inst.tokens.get_mut(&token) {
            t.wait = wait;
        }
    }

    /// Records a completed step and its result.
    fn done(&mut self, token: u32, result: Option<Value>, flow: Flow) -> Flow {
        let node = self.node(token);
        let step = node.id.clone();
        if node.named
            && let Some(r) = &result
        {
            self.write(Write::Result(step.clone(), r.clone()));
        }
        self.out.steps += 1;
        self.log("step_completed", Some(&step), result.unwrap_or(Value::Null));
        flow
    }

    /// Completes a waiting step and moves its token on.
    fn finish_step(&mut self, token: u32, result: Option<Value>, flow: Flow) {
        let flow = self.done(token, result, flow);
        self.move_token(token, flow);
    }

    fn move_token(&mut self, token: u32, flow: Flow) {
        let Some(t) = self.inst.tokens.get(&token) else {
            return;
        };
        let next = match flow {
            Flow::Wait | Flow::Gone => return,
            Flow::Jump(n) => Next::Node(n),
            Flow::Next => self.wf.node(t.node).next,
        };
        match next {
            Next::Node(n) => {
                if let Some(t) = self.inst.tokens.get_mut(&token) {
                    t.node = n;
                    t.wait = Wait::Ready;
                }
            }
            Next::BranchEnd(_) => {
                let frame = t.frame.expect("a branch token has a frame");
                self.arrive(token, frame);
            }
            Next::End => {
                self.inst.tokens.remove(&token);
                self.complete("completed".into(), Value::Null);
            }
        }
    }

    /// A branch token arrives at its join.
    fn arrive(&mut self, token: u32, frame: u32) {
        self.inst.tokens.remove(&token);
        let Some(f) = self.inst.joins.get_mut(&frame) else {
            return;
        };
        f.arrived += 1;
        if f.arrived < f.needed {
            return;
        }
        let f = self.inst.joins.remove(&frame).expect("frame exists");
        self.cancel_frame(frame);
        self.finish_step(f.parent, None, Flow::Next);
    }

    /// Cancels every token still running inside `frame` and its nested frames.
    fn cancel_frame(&mut self, frame: u32) {
        let inner: Vec<u32> = self
            .inst
            .tokens
            .iter()
            .filter(|(_, t)| t.frame == Some(frame))
            .map(|(id, _)| *id)
            .collect();
        for id in inner {
            if let Some(Wait::Join { frame: nested }) =
                self.inst.tokens.get(&id).map(|t| t.wait.clone())
            {
                self.inst.joins.remove(&nested);
                self.cancel_frame(nested);
            }
            self.drop_token(id, true);
        }
    }

    /// Removes a token and undoes what it waits on.
    fn drop_token(&mut self, id: u32, log: bool) {
        let Some(t) = self.inst.tokens.remove(&id) else {
            return;
        };
        let step = self.wf.node(t.node).id.clone();
        match t.wait {
            Wait::Timer { timer, .. } | Wait::Retry { timer, .. } => {
                self.out.effects.push(Effect::CancelTimer { timer })
            }
            Wait::Event { name, key, timer } => {
                if let Some(timer) = timer {
                    self.out.effects.push(Effect::CancelTimer { timer });
                }
                if let Some(key) = key {
                    self.out.effects.push(Effect::Unsubscribe { name, key });
                }
            }
            Wait::Link {
                timer: Some(timer), ..
            } => self.out.effects.push(Effect::CancelTimer { timer }),
            Wait::Task { task } => {
                self.forget_task(task);
                self.out.effects.push(Effect::CloseTask { task });
            }
            _ => {}
        }
        if log {
            self.log("branch_cancelled", Some(&step), Value::Null);
        }
    }

    fn complete(&mut self, outcome: String, output: Value) {
        self.log("instance_completed", None, json!({"outcome": outcome}));
        self.end(Status::Completed { outcome, output });
    }

    fn fail(&mut self, step: &str, error: String) {
        self.log("instance_failed", Some(step), json!({"error": error}));
        self.end(Status::Failed {
            step: step.to_owned(),
            error,
        });
    }

    fn end(&mut self, status: Status) {
        let ids: Vec<u32> = self.inst.tokens.keys().copied().collect();
        for id in ids {
            self.drop_token(id, false);
        }
        self.inst.joins.clear();
        let outcome = status.outcome().unwrap_or("completed").to_owned();
        let output = match &status {
            Status::Completed { output, .. } => output.clone(),
            _ => Value::Null,
        };
        self.inst.status = status;
        self.out.effects.push(Effect::Ended { outcome, output });
    }
}

/// A reproducible number in `[0, 1)` for retry jitter: the same after a crash and re-run.
fn jitter_unit(instance: &str, step: &str, attempt: u32) -> f64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{instance}/{step}/{attempt}").as_bytes());
    let n = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads a date (start of that day in `tz`) or an RFC 3339 time.
pub fn parse_time(v: &Value, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    clearflow_time::local::start_of_day(d, tz)
}
