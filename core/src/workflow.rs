//! The compiled, executable form of a workflow: a flat list of nodes with resolved jumps.

use std::collections::HashMap;
use std::sync::Arc;

use chrono_tz::Tz;
use clearflow_time::Span;
use serde_json::Value;

use crate::definition::{Backoff, CatchUpDef, Overlap};
use crate::diag::Pos;
use crate::expr::{Expr, Template};

/// Index of a node in [`Workflow::nodes`].
pub type NodeId = u32;

/// A checked, compiled workflow, ready to run. Immutable and shared behind an `Arc`.
#[derive(Debug)]
pub struct Workflow {
    /// The workflow's id.
    pub id: String,
    /// Where the id is written in the file.
    pub id_pos: Pos,
    /// sha256 of the file's text: the version instances are pinned to.
    pub hash: String,
    /// The file it came from.
    pub file: String,
    /// The file's text, stored with each version.
    pub source: String,
    /// Human title.
    pub title: Option<String>,
    /// The working-day calendar's region.
    pub calendar: Option<String>,
    /// Timezone for dates and durations.
    pub timezone: Tz,
    /// The start input's schema.
    pub input_schema: Option<Schema>,
    /// Roles acting in the workflow.
    pub roles: Vec<String>,
    /// Workflows started in the same transaction as this one.
    pub on_start: Vec<ConcurrentStart>,
    /// Cron schedules starting this workflow.
    pub schedules: Vec<ScheduleSpec>,
    /// Whether the reporter's identity may be read through this workflow's instances.
    pub identity_read: IdentityRead,
    /// The nodes; node 0 is the entry, or there is none when `nodes` is empty.
    pub nodes: Vec<Node>,
    /// Node ids by step id.
    pub ids: HashMap<String, NodeId>,
}

impl Workflow {
    /// The node with this step id.
    pub fn node_by_id(&self, id: &str) -> Option<&Node> {
        self.ids.get(id).map(|&n| &self.nodes[n as usize])
    }

    /// The node at `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    /// Where the first step is, or the end for an empty workflow.
    pub fn entry(&self) -> Next {
        if self.nodes.is_empty() {
            Next::End
        } else {
            Next::Node(0)
        }
    }
}

/// The rule for reading the reporter's identity through an instance (`identity_read:`).
#[derive(Debug, Default)]
pub enum IdentityRead {
    /// A holder of `read_identity` may, with a reason (no `identity_read:` in the file).
    #[default]
    WithPermission,
    /// Never through this workflow's instances.
    Never,
    /// Only once the task step `approval` has been done and `granted` is true.
    Approved {
        /// The deciding task step.
        approval: String,
        /// True when the read is granted.
        granted: Expr,
    },
}

/// A compiled JSON Schema with its source.
pub struct Schema {
    /// The schema as written.
    pub json: Value,
    /// The compiled validator.
    pub validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schema({})", self.json)
    }
}

impl Schema {
    /// Every violation of the schema by `value`, as `path: message` lines.
    pub fn violations(&self, value: &Value) -> Vec<String> {
        self.validator
            .iter_errors(value)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect()
    }
}

/// A workflow started together with another.
#[derive(Debug)]
pub struct ConcurrentStart {
    /// Where it is declared.
    pub pos: Pos,
    /// The workflow to start.
    pub workflow: String,
    /// The link name.
    pub alias: String,
    /// Its input, over the starting instance's context.
    pub input: Option<Template>,
}

/// A schedule as declared, checked.
#[derive(Debug)]
pub struct ScheduleSpec {
    /// Name, unique in the workflow.
    pub id: String,
    /// The parsed fire-time rule.
    pub schedule: clearflow_time::Schedule,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Catch-up policy as declared.
    pub catch_up: CatchUpDef,
    /// Input of each started instance.
    pub input: Value,
}

/// Where control goes after a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Another node.
    Node(NodeId),
    /// The end of a parallel branch: arrive at that parallel node's join.
    BranchEnd(NodeId),
    /// The end of the workflow (outcome `completed`).
    End,
}

/// One step, compiled.
#[derive(Debug)]
pub struct Node {
    /// The step id (given or generated).
    pub id: String,
    /// Whether the id was written in the file (only those carry results).
    pub named: bool,
    /// Human title.
    pub title: Option<String>,
    /// Where the step is in the file.
    pub pos: Pos,
    /// Run only when true.
    pub condition: Option<Expr>,
    /// Where to continue.
    pub next: Next,
    /// What the step does.
    pub kind: NodeKind,
}

/// What a step does.
#[derive(Debug)]
pub enum NodeKind {
    /// Call a plugin.
    Plugin(PluginStep),
    /// A human task.
    Task(TaskStep),
    /// An email.
    Notify(NotifyStep),
    /// Conditional jumps; no match falls through to `next`.
    Switch(Vec<(Option<Expr>, NodeId)>),
    /// Concurrent branches.
    Parallel {
        /// The first node of each branch (or the branch's end when it is empty).
        branches: Vec<Next>,
        /// How many branches must arrive.
        join: Join,
    },
    /// A wait.
    Wait(WaitStep),
    /// Set variables.
    Set(Vec<(String, Template)>),
    /// End the instance.
    End {
        /// The outcome as written (for graphs).
        outcome: String,
        /// The outcome, computed when it holds `${ … }`.
        computed: Option<Template>,
        /// The output.
        output: Option<Template>,
    },
    /// Start another workflow.
    Start {
        /// Which.
        workflow: String,
        /// Its input.
        input: Option<Template>,
        /// Wait for it to end.
        wait: bool,
        /// The link name (the step id when not given).
        alias: String,
        /// Not cancelled when this instance is (`on_parent_cancel: abandon`).
        detached: bool,
    },
    /// Await a linked instance.
    Await {
        /// The link name.
        link: String,
        /// Give up after this long.
        timeout: Option<Span>,
        /// Continue here after a timeout.
        on_timeout: Option<NodeId>,
    },
    /// Jump.
    Goto(NodeId),
}

impl NodeKind {
    /// The kind's name as written in files and history.
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Plugin(_) => "plugin",
            NodeKind::Task(_) => "task",
            NodeKind::Notify(_) => "notify",
            NodeKind::Switch(_) => "switch",
            NodeKind::Parallel { .. } => "parallel",
            NodeKind::Wait(_) => "wait",
            NodeKind::Set(_) => "set",
            NodeKind::End { .. } => "end",
            NodeKind::Start { .. } => "start",
            NodeKind::Await { .. } => "await",
            NodeKind::Goto(_) => "goto",
        }
    }
}

/// Join condition of a parallel node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// Every branch.
    All,
    /// This many branches; the rest are cancelled.
    Count(u32),
}

/// A plugin call.
#[derive(Debug)]
pub struct PluginStep {
    /// The plugin's name in the daemon's config.
    pub plugin: String,
    /// The input.
    pub input: Template,
    /// Schema of the output.
    pub output_schema: Option<Schema>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Per-call wall-clock limit overriding the plugin's.
    pub timeout: Option<Span>,
}

/// When and how often a failed plugin call is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub attempts: u32,
    /// Backoff shape.
    pub backoff: Backoff,
    /// First delay.
    pub initial: std::time::Duration,
    /// Longest delay.
    pub max: std::time::Duration,
    /// Random extra fraction of the delay.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            backoff: Backoff::Exponential,
            initial: std::time::Duration::from_secs(1),
            max: std::time::Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next_attempt` (2 for the first retry). `unit` in
    /// `[0, 1)` picks the jitter so the result is reproducible.
    pub fn delay(&self, next_attempt: u32, unit: f64) -> std::time::Duration {
        let base = match self.backoff {
            Backoff::Fixed => self.initial,
            Backoff::Exponential => {
                let factor = 2f64.powi(next_attempt.saturating_sub(2).min(30) as i32);
                self.initial.mul_f64(factor)
            }
        };
        let base = base.min(self.max);
        base.mul_f64(1.0 + self.jitter * unit.clamp(0.0, 1.0))
            .min(self.max.max(base))
    }
}

/// A human task.
#[derive(Debug)]
pub struct TaskStep {
    /// Candidate role.
    pub role: Option<String>,
    /// Assignee expression.
    pub assignee: Option<Expr>,
    /// Title template.
    pub title: Option<Template>,
    /// Form schema.
    pub form: Option<Schema>,
    /// Due after creation.
    pub due: Option<Span>,
    /// Follow-up after creation.
    pub follow_up: Option<Span>,
    /// Reminders relative to the due date.
    pub remind: Vec<Span>,
    /// Repeat interval of reminders after the due date.
    pub remind_every: Option<Span>,
    /// Escalation.
    pub escalate: Option<Escalation>,
    /// Priority.
    pub priority: i32,
    /// Steps whose actors may not complete this task.
    pub distinct_from: Vec<String>,
    /// The initiator may not complete this task.
    pub distinct_from_initiator: bool,
    /// Where a rejection goes.
    pub on_reject: Option<NodeId>,
    /// Whether creation and reassignment mail the `task-assigned` notice.
    pub notify_assigned: bool,
}

/// Escalation of an overdue task.
#[derive(Debug)]
pub struct Escalation {
    /// After the due date.
    pub after: Span,
    /// Notify this role.
    pub notify: Option<String>,
    /// Reassign to this role.
    pub reassign: Option<String>,
    /// Continue here instead.
    pub goto: Option<NodeId>,
}

/// An email.
#[derive(Debug)]
pub struct NotifyStep {
    /// Template name.
    pub template: String,
    /// Recipients.
    pub to: Vec<Recipient>,
    /// Copy recipients.
    pub cc: Vec<Recipient>,
    /// Blind-copy recipients.
    pub bcc: Vec<Recipient>,
    /// Locale expression or literal.
    pub locale: Option<Template>,
    /// Template data.
    pub data: Option<Template>,
    /// Lists read from the store when the message is queued.
    pub lists: Vec<ListQuery>,
}

/// A list of instances read from the store for a notification.
#[derive(Debug)]
pub struct ListQuery {
    /// The template value's name.
    pub name: String,
    /// The listed workflow (for a task list: its `workflow`, if any, else empty).
    pub workflow: String,
    /// Open tasks instead of instances.
    pub tasks: Option<TaskList>,
    /// Where `instances:` (or `tasks:`) is written.
    pub pos: Pos,
    /// The statuses listed (`running`, `completed`, `failed`, `cancelled`).
    pub statuses: Vec<String>,
    /// The filter, over the listed instance, and where it is written.
    pub filter: Option<(Expr, Pos)>,
    /// Entry values, over the listed instance, and where each is written.
    pub fields: Vec<(String, Expr, Pos)>,
    /// The most entries.
    pub limit: u32,
}

/// Which open tasks a list reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskList {
    /// Only this candidate role.
    pub role: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only tasks past their due date.
    pub overdue: bool,
}

/// One recipient entry.
#[derive(Debug)]
pub enum Recipient {
    /// The members of a role.
    Role(String),
    /// Addresses from an expression (a string or a list of strings).
    Expr(Template),
}

/// A wait.
#[derive(Debug)]
pub enum WaitStep {
    /// For a duration.
    For(Span),
    /// Until a date or time from data.
    Until(Expr),
    /// For an external event.
    Event {
        /// Event name.
        name: String,
        /// Correlation key.
        key: Option<Expr>,
        /// Give up after this long.
        timeout: Option<Span>,
        /// Continue here after a timeout.
        on_timeout: Option<NodeId>,
    },
}
