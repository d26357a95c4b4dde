//! Human tasks in the engine: creation, the pure check of a completion or rejection
//! (form schema, separation of duties), and the reminder, follow-up and escalation timers.
//!
//! The shell calls [`check_task_action`] before it accepts a completion (to answer the
//! caller synchronously), and the engine applies the same check again when the event
//! arrives: a completion that became invalid in between (two tiers completed at the same
//! moment by one person) is refused with a `task_refused` history entry and a
//! [`Effect::ReopenTask`], and changes nothing else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Effect, Flow, Instance, ProvisionalDue, Run, Wait};
use crate::workflow::{Node, NodeKind, TaskStep, Workflow};

/// An open task as the instance remembers it, for reminders and escalation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenTask {
    /// The token waiting on it.
    pub token: u32,
    /// The task step.
    pub step: String,
    /// The rendered title (the step id when the step has none).
    pub title: String,
    /// Candidate role (changed by a reassigning escalation).
    pub role: Option<String>,
    /// Assigned user.
    pub assignee: Option<String>,
    /// Due date.
    pub due: Option<DateTime<Utc>>,
    /// Its armed timers and what each does.
    pub timers: BTreeMap<u32, TaskTimer>,
}

/// What a task timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskTimer {
    /// A reminder relative to the due date (`remind`).
    Remind,
    /// A reminder after the due date that arms the next one (`remind_every`).
    Repeat,
    /// The follow-up date (`follow_up`): a reminder too.
    FollowUp,
    /// The escalation (`escalate.after` past the due date).
    Escalate,
}

impl TaskTimer {
    fn name(self) -> &'static str {
        match self {
            TaskTimer::Remind => "remind",
            TaskTimer::Repeat => "remind_every",
            TaskTimer::FollowUp => "follow_up",
            TaskTimer::Escalate => "escalate",
        }
    }
}

/// What a person does to a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum TaskAction {
    /// Complete it with a form.
    Complete {
        /// The form, checked against the step's form schema.
        form: Value,
    },
    /// Reject it with a reason; control goes to the step's `on_reject`.
    Reject {
        /// Why.
        reason: String,
    },
}

impl TaskAction {
    fn name(&self) -> &'static str {
        match self {
            TaskAction::Complete { .. } => "complete",
            TaskAction::Reject { .. } => "reject",
        }
    }
}

/// Why a task action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// No token waits on the task (it was closed, or the instance moved on).
    NotOpen,
    /// The form violates the step's form schema.
    Form,
    /// The actor already acted on a step this one must be separate from, or started
    /// the instance.
    SeparationOfDuties,
    /// The rejection is not possible (no `on_reject`) or has no reason.
    Reject,
}

/// One reason a task action is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The class, for the caller's status code.
    pub kind: RefusalKind,
    /// The message, naming the steps involved.
    pub message: String,
}

/// Checks whether `actor` may do `action` to task `task` of `inst`: every reason it may
/// not, at once. Pure; the engine applies the same check when the event arrives.
pub fn check_task_action(
    wf: &Workflow,
    inst: &Instance,
    task: u32,
    actor: &str,
    action: &TaskAction,
) -> Result<(), Vec<Refusal>> {
    match open_task_step(wf, inst, task) {
        Some((node, step)) => check(inst, node, step, actor, action),
        None => Err(vec![not_open(inst, task)]),
    }
}

/// Checks whether `actor` may claim task `task` of `inst`: not when separation of duties
/// would refuse their completion (a claim they could never complete would only keep the
/// task from the others of the role). Every reason at once.
pub fn check_claim(
    wf: &Workflow,
    inst: &Instance,
    task: u32,
    actor: &str,
) -> Result<(), Vec<Refusal>> {
    match open_task_step(wf, inst, task) {
        Some((node, step)) => {
            let out = separation(inst, node, step, actor);
            if out.is_empty() { Ok(()) } else { Err(out) }
        }
        None => Err(vec![not_open(inst, task)]),
    }
}

fn open_task_step<'w>(
    wf: &'w Workflow,
    inst: &Instance,
    task: u32,
) -> Option<(&'w Node, &'w TaskStep)> {
    inst.tokens.values().find_map(|t| match t.wait {
        Wait::Task { task: x } if x == task => match &wf.node(t.node).kind {
            NodeKind::Task(step) => Some((wf.node(t.node), step)),
            _ => None,
        },
        _ => None,
    })
}

fn not_open(inst: &Instance, task: u32) -> Refusal {
    Refusal {
        kind: RefusalKind::NotOpen,
        message: format!("task {task} of instance {} is not open", inst.id),
    }
}

/// The separation-of-duties refusals for `actor` on step `t`.
fn separation(inst: &Instance, node: &Node, t: &TaskStep, actor: &str) -> Vec<Refusal> {
    let mut out = Vec::new();
    let step = &node.id;
    for other in &t.distinct_from {
        if inst.actors.get(other).map(String::as_str) == Some(actor) {
            out.push(Refusal {
                kind: RefusalKind::SeparationOfDuties,
                message: format!("{actor} completed `{other}`; `{step}` needs a different person"),
            });
        }
    }
    if t.distinct_from_initiator && inst.initiator.as_deref() == Some(actor) {
        out.push(Refusal {
            kind: RefusalKind::SeparationOfDuties,
            message: format!(
                "{actor} started this instance; `{step}` needs someone other than the initiator"
            ),
        });
    }
    out
}

fn check(
    inst: &Instance,
    node: &Node,
    t: &TaskStep,
    actor: &str,
    action: &TaskAction,
) -> Result<(), Vec<Refusal>> {
    let mut out = separation(inst, node, t, actor);
    let step = &node.id;
    match action {
        TaskAction::Complete { form } => {
            if let Some(schema) = &t.form {
                out.extend(schema.violations(form).into_iter().map(|v| Refusal {
                    kind: RefusalKind::Form,
                    message: format!("form: {v}"),
                }));
            }
        }
        TaskAction::Reject { reason } => {
            if t.on_reject.is_none() {
                out.push(Refusal {
                    kind: RefusalKind::Reject,
                    message: format!("`{step}` cannot be rejected: the step has no `on_reject`"),
                });
            }
            if reason.trim().is_empty() {
                out.push(Refusal {
                    kind: RefusalKind::Reject,
                    message: "a rejection needs a reason".into(),
                });
            }
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Working days (calendar days without a calendar) from the local date of `due`
/// (exclusive) to that of `now` (inclusive).
fn overdue_days(
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    cal: Option<&clearflow_time::Calendar>,
) -> i64 {
    use chrono::{Datelike, Weekday};
    let from = due.with_timezone(&tz).date_naive();
    let to = now.with_timezone(&tz).date_naive();
    let mut n = 0;
    let mut d = from;
    // Bounded: an escalation years late still counts in a few thousand steps.
    for _ in 0..40_000 {
        if d >= to {
            break;
        }
        d = d.succ_opt().unwrap_or(to);
        let working = match cal.and_then(|c| c.is_working_day(d)) {
            Some(w) => w,
            None if cal.is_some() => !matches!(d.weekday(), Weekday::Sat | Weekday::Sun),
            None => true,
        };
        if working {
            n += 1;
        }
    }
    n
}

impl<'a> Run<'a> {
    /// Applies a completion or rejection, after checking it again.
    pub(super) fn task_action(
        &mut self,
        token: u32,
        expected: Option<u32>,
        actor: String,
        action: TaskAction,
    ) {
        let Some(Wait::Task { task }) = self.inst.tokens.get(&token).map(|t| t.wait.clone()) else {
            return self.stale("task", token);
        };
        if expected.is_some_and(|e| e != task) {
            return self.stale("task", token);
        }
        let node = self.node(token);
        let step = node.id.clone();
        let NodeKind::Task(t) = &node.kind else {
            return self.stale("task", token);
        };
        if let Err(refusals) = check(self.inst, node, t, &actor, &action) {
            let reasons: Vec<String> = refusals.into_iter().map(|r| r.message).collect();
            self.log(
                "task_refused",
                Some(&step),
                json!({"task": task, "actor": actor, "action": action.name(), "reasons": reasons}),
            );
            self.out.effects.push(Effect::ReopenTask { task, reasons });
            return;
        }
        self.forget_task(task);
        match action {
            TaskAction::Complete { form } => {
                self.inst.actors.insert(step.clone(), actor.clone());
                self.log(
                    "task_completed",
                    Some(&step),
                    json!({"task": task, "actor": actor}),
                );
                self.finish_step(token, Some(form), Flow::Next);
            }
            TaskAction::Reject { reason } => {
                self.log(
                    "task_rejected",
                    Some(&step),
                    json!({"task": task, "actor": actor, "reason": reason}),
                );
                if let Some(to) = t.on_reject {
                    self.move_token(token, Flow::Jump(to));
                }
            }
        }
    }

    /// Creates the task of a task step: the effect, the wait, the timers and the
    /// assignment notice.
    pub(super) fn create_task(
        &mut self,
        token: u32,
        node: &'a Node,
        t: &'a TaskStep,
        ctx: &minijinja::Value,
    ) -> Result<Flow, String> {
        let step = node.id.as_str();
        let title = t
            .title
            .as_ref()
            .map(|t| t.render(ctx))
            .transpose()
            .map_err(|e| format!("task title: {e}"))?
            .and_then(|v| v.as_str().map(str::to_owned));
        let assignee = t
            .assignee
            .as_ref()
            .map(|a| a.eval(ctx))
            .transpose()
            .map_err(|e| format!("assignee: {e}"))?
            .and_then(|v| v.as_str().map(str::to_owned));
        let (due, provisional) = match &t.due {
            Some(span) => {
                let (at, p) = self.deadline(span)?;
                (Some(at), p)
            }
            None => (None, false),
        };
        let follow_up = match &t.follow_up {
            Some(span) => Some(self.deadline(span)?.0),
            None => None,
        };
        let task = self.inst.next_id();
        self.out.effects.push(Effect::CreateTask {
            task,
            token,
            step: step.to_owned(),
            title: title.clone(),
            role: t.role.clone(),
            assignee: assignee.clone(),
            due,
            provisional,
            priority: t.priority,
            follow_up,
        });
        self.set_wait(token, Wait::Task { task });
        self.log(
            "step_waiting",
            Some(step),
            json!({"task": task, "role": t.role, "due": due}),
        );
        let mut timers = match due {
            Some(due) => self.arm_due_timers(t, due)?,
            None => BTreeMap::new(),
        };
        if let (Some(span), Some(at), true) = (&t.due, due, provisional) {
            self.inst.provisional.tasks.insert(
                task,
                ProvisionalDue {
                    step: step.to_owned(),
                    from: self.env.now,
                    span: span.to_string(),
                    at,
                },
            );
            self.report_provisional(step, span, at);
        }
        if let Some(at) = follow_up {
            timers.insert(self.arm(at), TaskTimer::FollowUp);
        }
        self.inst.tasks.insert(
            task,
            OpenTask {
                token,
                step: step.to_owned(),
                title: title.unwrap_or_else(|| node.title.clone().unwrap_or_else(|| step.into())),
                role: t.role.clone(),
                assignee,
                due,
                timers,
            },
        );
        if t.notify_assigned {
            self.task_mail(task, "task-assigned", Vec::new(), None);
        }
        Ok(Flow::Wait)
    }

    /// Arms the reminders, the repeating reminder and the escalation of a task due at
    /// `due`; returns them by timer id.
    fn arm_due_timers(
        &mut self,
        t: &TaskStep,
        due: DateTime<Utc>,
    ) -> Result<BTreeMap<u32, TaskTimer>, String> {
        let now = self.env.now;
        let mut plan: Vec<(DateTime<Utc>, TaskTimer)> = Vec::new();
        for span in &t.remind {
            plan.push((self.deadline_from(due, span)?.0, TaskTimer::Remind));
        }
        if let Some(every) = &t.remind_every {
            plan.push((self.deadline_from(due, every)?.0, TaskTimer::Repeat));
        }
        if let Some(e) = &t.escalate {
            plan.push((self.deadline_from(due, &e.after)?.0, TaskTimer::Escalate));
        }
        let mut timers = BTreeMap::new();
        for (at, kind) in plan {
            // A reminder whose time has already passed is not sent late.
            if at > now || kind != TaskTimer::Remind {
                timers.insert(self.arm(at.max(now)), kind);
            }
        }
        Ok(timers)
    }

    /// Recomputes the provisional due dates of open tasks with the calendars of the
    /// moment: a changed date moves the task's reminders and escalation (not its
    /// follow-up, which has its own span) and is announced as `RescheduleTask`.
    pub(super) fn recalendar_tasks(&mut self) {
        let dues: Vec<(u32, ProvisionalDue)> = self
            .inst
            .provisional
            .tasks
            .iter()
            .map(|(n, p)| (*n, p.clone()))
            .collect();
        for (task, p) in dues {
            let Some(open) = self.inst.tasks.get(&task).cloned() else {
                self.inst.provisional.tasks.remove(&task);
                continue;
            };
            let node = self
                .inst
                .tokens
                .get(&open.token)
                .map(|tok| self.wf.node(tok.node));
            let Some(NodeKind::Task(t)) = node.map(|n| &n.kind) else {
                self.inst.provisional.tasks.remove(&task);
                continue;
            };
            let Some((due, provisional)) =
                self.recompute(&p.step, &p.span, p.from, json!({"task": task}))
            else {
                continue;
            };
            if due != p.at {
                let moving: Vec<u32> = open
                    .timers
                    .iter()
                    .filter(|(_, kind)| **kind != TaskTimer::FollowUp)
                    .map(|(id, _)| *id)
                    .collect();
                for timer in &moving {
                    self.out.effects.push(Effect::CancelTimer { timer: *timer });
                }
                let armed = match self.arm_due_timers(t, due) {
                    Ok(armed) => armed,
                    Err(e) => {
                        self.log(
                            "deadline_not_recomputed",
                            Some(&p.step),
                            json!({"task": task, "error": e}),
                        );
                        BTreeMap::new()
                    }
                };
                if let Some(o) = self.inst.tasks.get_mut(&task) {
                    o.timers.retain(|id, _| !moving.contains(id));
                    o.timers.extend(armed);
                    o.due = Some(due);
                }
            }
            if due != p.at || !provisional {
                self.out.effects.push(Effect::RescheduleTask {
                    task,
                    due,
                    provisional,
                });
            }
            if provisional {
                self.inst.provisional.tasks.insert(
                    task,
                    ProvisionalDue {
                        at: due,
                        ..p.clone()
                    },
                );
            } else {
                self.inst.provisional.tasks.remove(&task);
            }
            self.log(
                "deadline_recomputed",
                Some(&p.step),
                json!({"task": task, "span": p.span, "was": p.at, "until": due, "provisional": provisional}),
            );
        }
    }

    /// Drops an open task's record and cancels its timers.
    pub(super) fn forget_task(&mut self, task: u32) {
        self.inst.provisional.tasks.remove(&task);
        if let Some(open) = self.inst.tasks.remove(&task) {
            for timer in open.timers.into_keys() {
                self.out.effects.push(Effect::CancelTimer { timer });
            }
        }
    }

    /// The open task owning `timer`, if any.
    pub(super) fn task_of_timer(&self, timer: u32) -> Option<u32> {
        self.inst
            .tasks
            .iter()
            .find(|(_, t)| t.timers.contains_key(&timer))
            .map(|(n, _)| *n)
    }

    /// A task timer fell due.
    pub(super) fn task_timer(&mut self, task: u32, timer: u32) {
        let Some(kind) = self
            .inst
            .tasks
            .get_mut(&task)
            .and_then(|t| t.timers.remove(&timer))
        else {
            return;
        };
        let open = self.inst.tasks[&task].clone();
        let Some(tok) = self.inst.tokens.get(&open.token) else {
            return;
        };
        let node = self.wf.node(tok.node);
        let NodeKind::Task(t) = &node.kind else {
            return;
        };
        match kind {
            TaskTimer::Remind | TaskTimer::FollowUp | TaskTimer::Repeat => {
                self.log(
                    "task_reminded",
                    Some(&open.step),
                    json!({"task": task, "timer": kind.name()}),
                );
                self.task_mail(task, "task-reminder", Vec::new(), None);
                if kind == TaskTimer::Repeat
                    && let Some(every) = &t.remind_every
                {
                    match self.deadline(every) {
                        Ok((at, _)) => {
                            let id = self.arm(at);
                            if let Some(o) = self.inst.tasks.get_mut(&task) {
                                o.timers.insert(id, TaskTimer::Repeat);
                            }
                        }
                        Err(e) => self.fail(&open.step, format!("remind_every: {e}")),
                    }
                }
            }
            TaskTimer::Escalate => {
                let Some(e) = &t.escalate else { return };
                let goto = e.goto.map(|n| self.wf.node(n).id.clone());
                self.log(
                    "task_escalated",
                    Some(&open.step),
                    json!({"task": task, "notify": e.notify, "reassign": e.reassign, "goto": goto}),
                );
                if let Some(role) = &e.notify {
                    let cal = self
                        .wf
                        .calendar
                        .as_deref()
                        .and_then(|c| self.env.calendars.get(c));
                    let days = open
                        .due
                        .map(|due| overdue_days(due, self.env.now, self.wf.timezone, cal));
                    let mut to: Vec<String> = open
                        .assignee
                        .iter()
                        .map(|a| format!("leader:{a}"))
                        .collect();
                    to.push(format!("role:{role}"));
                    self.task_mail(task, "task-overdue-escalation", to, days);
                }
                if let Some(role) = &e.reassign {
                    if let Some(o) = self.inst.tasks.get_mut(&task) {
                        o.role = Some(role.clone());
                        o.assignee = None;
                    }
                    self.out.effects.push(Effect::ReassignTask {
                        task,
                        role: role.clone(),
                    });
                    self.log(
                        "task_reassigned",
                        Some(&open.step),
                        json!({"task": task, "role": role}),
                    );
                    if t.notify_assigned {
                        self.task_mail(task, "task-assigned", Vec::new(), None);
                    }
                }
                if let Some(to) = e.goto {
                    self.forget_task(task);
                    self.out.effects.push(Effect::CloseTask { task });
                    self.move_token(open.token, Flow::Jump(to));
                }
            }
        }
    }

    /// Queues a task mail: to `to`, or by default to the assignee, else the role's members.
    fn task_mail(&mut self, task: u32, template: &str, to: Vec<String>, overdue: Option<i64>) {
        let Some(open) = self.inst.tasks.get(&task) else {
            return;
        };
        let to = if to.is_empty() {
            match (&open.assignee, &open.role) {
                (Some(a), _) => vec![format!("user:{a}")],
                (None, Some(r)) => vec![format!("role:{r}")],
                (None, None) => Vec::new(),
            }
        } else {
            to
        };
        let due = open.due.map(|d| {
            d.with_timezone(&self.wf.timezone)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        });
        let number = match self.data().get("input").and_then(|i| i.get("case_number")) {
            Some(Value::String(s)) => s.clone(),
            _ => self.inst.id.clone(),
        };
        let data = json!({
            "task": {"number": task, "title": open.title, "role": open.role, "due": due, "overdue_days": overdue},
            "case": {"number": number},
        });
        let step = open.step.clone();
        self.out.effects.push(Effect::QueueMail {
            step,
            template: template.to_owned(),
            to,
            cc: Vec::new(),
            bcc: Vec::new(),
            locale: None,
            data,
        });
    }
}
