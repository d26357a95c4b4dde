//! Task rows: written by the engine's commit (create, reassign, reopen, close) and by
//! people through the API (claim, unclaim, complete, reject).
//!
//! A completion or rejection updates the row and queues the engine event for the
//! instance in one transaction, so a task is never closed without its event nor the
//! reverse. The engine checks the action again when it applies the event; if it refuses,
//! its `ReopenTask` effect opens the row again in the commit of that refusal.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Advance, Store, StoreError, params, pow2_chunks, push_event};

/// A task to insert, from the engine's `CreateTask` effect.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Task number within the instance.
    pub task_no: i64,
    /// The waiting token.
    pub token: i64,
    /// The step.
    pub step: String,
    /// The workflow.
    pub workflow: String,
    /// Title.
    pub title: Option<String>,
    /// Candidate role.
    pub role: Option<String>,
    /// Assignee.
    pub assignee: Option<String>,
    /// Priority.
    pub priority: i64,
    /// Due (ms).
    pub due_at: Option<i64>,
    /// Follow-up (ms).
    pub follow_up_at: Option<i64>,
    /// Whether the due date is provisional.
    pub provisional: bool,
}

/// A change to the task rows of an advancing instance, applied in its commit.
#[derive(Debug, Clone)]
pub enum TaskOp {
    /// Insert an open task.
    Create(NewTask),
    /// Cancel the task if it is still open (branch cancelled, instance ended, escalation).
    Close(i64),
    /// Give the open task to another role: no assignee, no claim.
    Reassign(i64, String),
    /// The engine refused a completion or rejection: open the task again.
    Reopen(i64),
    /// The open task's due date moved (recomputed on new calendars): `(task, due ms,
    /// still provisional)`.
    Reschedule(i64, i64, bool),
}

/// A task as listed and shown.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskRow {
    /// Id.
    pub id: String,
    /// The instance.
    pub instance_id: String,
    /// Task number within the instance.
    pub task_no: i64,
    /// The waiting token.
    pub token: i64,
    /// The step.
    pub step: String,
    /// The workflow.
    pub workflow: String,
    /// Title.
    pub title: Option<String>,
    /// Candidate role.
    pub role: Option<String>,
    /// Assignee.
    pub assignee: Option<String>,
    /// Who claimed it.
    pub claimed_by: Option<String>,
    /// `open`, `completed`, `rejected` or `cancelled`.
    pub status: String,
    /// Priority, higher first.
    pub priority: i64,
    /// Due (ms).
    pub due_at: Option<i64>,
    /// Follow-up (ms).
    pub follow_up_at: Option<i64>,
    /// Whether the due date is provisional.
    pub provisional: bool,
    /// Created (ms).
    pub created_at: i64,
    /// Closed (ms).
    pub closed_at: Option<i64>,
    /// Who closed it.
    pub closed_by: Option<String>,
    /// The form or the rejection reason.
    pub result: Option<serde_json::Value>,
}

/// A task as the API and notification lists show it: the row, its due and follow-up
/// dates as RFC 3339, and whether it is late. Serialised straight into responses (a page
/// of them is the task list).
#[derive(Debug, serde::Serialize)]
pub struct TaskView<'a> {
    /// The row.
    #[serde(flatten)]
    pub row: &'a TaskRow,
    /// `due_at` as RFC 3339.
    pub due: Option<String>,
    /// `follow_up_at` as RFC 3339.
    pub follow_up: Option<String>,
    /// Open and past its due date.
    pub overdue: bool,
}

impl TaskView<'_> {
    /// The view of `t` at `now` (ms).
    pub fn of(t: &TaskRow, now: i64) -> TaskView<'_> {
        let time = |ms: Option<i64>| {
            ms.map(|d| {
                chrono::DateTime::from_timestamp_millis(d)
                    .unwrap_or_default()
                    .to_rfc3339()
            })
        };
        TaskView {
            row: t,
            due: time(t.due_at),
            follow_up: time(t.follow_up_at),
            overdue: t.status == "open" && t.due_at.is_some_and(|d| d < now),
        }
    }
}

impl TaskRow {
    /// [`TaskView`] as a JSON value, for answers that add to it.
    pub fn view(&self, now: i64) -> serde_json::Value {
        serde_json::to_value(TaskView::of(self, now)).unwrap_or(serde_json::Value::Null)
    }
}

/// Filters for listing tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Tasks visible to this user: of these roles, or assigned to or claimed by the user.
    pub visible_to: Option<(String, Vec<String>)>,
    /// Only tasks assigned to or claimed by this user.
    pub mine: Option<String>,
    /// Only this role.
    pub role: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only tasks due before this time (ms).
    pub due_before: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Continue after this (priority, created_at, id).
    pub after: Option<(i64, i64, String)>,
    /// Only tasks of instances with this case number.
    pub case_number: Option<String>,
    /// Earliest due first (tasks without a due date last), instead of priority order.
    pub order_by_due: bool,
}

/// Why a person's action on a task was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRefused {
    /// No such task.
    NotFound,
    /// The task is closed (its status).
    NotOpen(String),
    /// The user may not act on it (why).
    Forbidden(String),
    /// Someone else holds the claim.
    Conflict(String),
}

/// What a person does that closes a task.
#[derive(Debug, Clone)]
pub enum Closing {
    /// Completed with this form.
    Completed(serde_json::Value),
    /// Rejected with this reason.
    Rejected(String),
}

const TASK_COLUMNS: &str = "id, instance_id, task_no, token, step, workflow, title, role, assignee, claimed_by, status, priority, due_at, follow_up_at, provisional, created_at, closed_at, closed_by, result";

fn task_row(r: &AnyRow) -> Result<TaskRow, sqlx::Error> {
    let result: Option<String> = r.try_get("result")?;
    Ok(TaskRow {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        task_no: r.try_get("task_no")?,
        token: r.try_get("token")?,
        step: r.try_get("step")?,
        workflow: r.try_get("workflow")?,
        title: r.try_get("title")?,
        role: r.try_get("role")?,
        assignee: r.try_get("assignee")?,
        claimed_by: r.try_get("claimed_by")?,
        status: r.try_get("status")?,
        priority: r.try_get("priority")?,
        due_at: r.try_get("due_at")?,
        follow_up_at: r.try_get("follow_up_at")?,
        provisional: r.try_get::<i64, _>("provisional")? != 0,
        created_at: r.try_get("created_at")?,
        closed_at: r.try_get("closed_at")?,
        closed_by: r.try_get("closed_by")?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

/// Whether `user` with `roles` may act on `t`, and if not why.
fn may_act(t: &TaskRow, user: &str, roles: &[String]) -> Result<(), TaskRefused> {
    if t.status != "open" {
        return Err(TaskRefused::NotOpen(t.status.clone()));
    }
    let assigned = t.assignee.as_deref() == Some(user);
    let member = t.role.as_ref().is_some_and(|r| roles.contains(r));
    if !assigned && !member {
        return Err(TaskRefused::Forbidden(match (&t.assignee, &t.role) {
            (Some(a), _) => format!("task {} is assigned to {a}", t.id),
            (None, Some(r)) => format!(
                "task {} is for role `{r}`, which {user} does not hold",
                t.id
            ),
            (None, None) => format!("task {} has neither role nor assignee", t.id),
        }));
    }
    match &t.claimed_by {
        Some(c) if c != user => Err(TaskRefused::Conflict(format!(
            "task {} is claimed by {c}",
            t.id
        ))),
        _ => Ok(()),
    }
}

/// Applies the task changes of a batch inside its commit transaction.
pub(super) async fn write_task_ops(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    batch: &[Advance],
    now: i64,
) -> Result<(), StoreError> {
    let mut ended: Vec<&str> = Vec::new();
    for a in batch {
        for op in &a.tasks {
            match op {
                TaskOp::Create(t) => {
                    sqlx::query(
                        "INSERT INTO tasks (id, instance_id, task_no, token, step, workflow, title, role, assignee, claimed_by, status, priority, due_at, follow_up_at, provisional, created_at, closed_at, closed_by, result) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 'open', $10, $11, $12, $13, $14, NULL, NULL, NULL) ON CONFLICT DO NOTHING",
                    )
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind(&a.id)
                    .bind(t.task_no)
                    .bind(t.token)
                    .bind(&t.step)
                    .bind(&t.workflow)
                    .bind(&t.title)
                    .bind(&t.role)
                    .bind(&t.assignee)
                    .bind(t.priority)
                    .bind(t.due_at)
                    .bind(t.follow_up_at)
                    .bind(i64::from(t.provisional))
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                }
                TaskOp::Close(no) => {
                    sqlx::query("UPDATE tasks SET status = 'cancelled', closed_at = $1, closed_by = 'system' WHERE instance_id = $2 AND task_no = $3 AND status = 'open'")
                        .bind(now)
                        .bind(&a.id)
                        .bind(*no)
                        .execute(&mut **tx)
                        .await?;
                }
                TaskOp::Reassign(no, role) => {
                    sqlx::query("UPDATE tasks SET role = $1, assignee = NULL, claimed_by = NULL WHERE instance_id = $2 AND task_no = $3 AND status = 'open'")
                        .bind(role)
                        .bind(&a.id)
                        .bind(*no)
                        .execute(&mut **tx)
                        .await?;
                }
                TaskOp::Reopen(no) => {
                    sqlx::query("UPDATE tasks SET status = 'open', closed_at = NULL, closed_by = NULL, result = NULL WHERE instance_id = $1 AND task_no = $2 AND status IN ('completed', 'rejected')")
                        .bind(&a.id)
                        .bind(*no)
                        .execute(&mut **tx)
                        .await?;
                }
                TaskOp::Reschedule(no, due, provisional) => {
                    sqlx::query("UPDATE tasks SET due_at = $1, provisional = $2 WHERE instance_id = $3 AND task_no = $4 AND status = 'open'")
                        .bind(*due)
                        .bind(i64::from(*provisional))
                        .bind(&a.id)
                        .bind(*no)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        if a.ended {
            ended.push(&a.id);
        }
    }
    // An instance that ended (even one failed for an unreadable state) leaves no open task.
    for chunk in pow2_chunks(&ended, 256) {
        let sql = format!(
            "UPDATE tasks SET status = 'cancelled', closed_at = $1, closed_by = 'system' WHERE status = 'open' AND instance_id IN ({})",
            params(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(now);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// One task.
    pub async fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(task_row).transpose()?)
    }

    /// Tasks matching `f`, highest priority first, then oldest first (or, with
    /// `order_by_due`, the soonest due first, tasks without a due date last).
    ///
    /// An inbox — open tasks visible to a user, by due date — is one index-ordered
    /// subquery per way a task can be the user's (assigned, claimed, each of their
    /// roles; made disjoint so none is listed twice), each stopping at the page's limit,
    /// merged and cut to the limit: a page costs the same with ten or ten thousand open
    /// tasks (the `tasks_open_*_due` indexes).
    pub async fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRow>, StoreError> {
        let mut binds: Vec<Bind> = Vec::new();
        let order = if f.order_by_due {
            // NULLs last without a CASE, so that the `tasks_open_*_due` indexes serve it.
            "COALESCE(due_at, 9223372036854775807), priority DESC, created_at, id"
        } else {
            "priority DESC, created_at, id"
        };
        let open_only = f.status.as_deref() == Some("open");
        let sql = match &f.visible_to {
            Some((user, roles)) if f.order_by_due && open_only => {
                let mut roles: Vec<&String> = roles.iter().collect();
                roles.sort_unstable();
                roles.dedup();
                let mut parts = Vec::new();
                let mut alternatives: Vec<Vec<String>> = Vec::new();
                let u = next(&mut binds, Bind::Text(user.clone()));
                alternatives.push(vec![format!("assignee = {u}")]);
                let u1 = next(&mut binds, Bind::Text(user.clone()));
                let u2 = next(&mut binds, Bind::Text(user.clone()));
                alternatives.push(vec![
                    format!("claimed_by = {u1}"),
                    format!("(assignee IS NULL OR assignee <> {u2})"),
                ]);
                for r in roles {
                    let r = next(&mut binds, Bind::Text(r.clone()));
                    let u1 = next(&mut binds, Bind::Text(user.clone()));
                    let u2 = next(&mut binds, Bind::Text(user.clone()));
                    alternatives.push(vec![
                        format!("role = {r}"),
                        format!("(assignee IS NULL OR assignee <> {u1})"),
                        format!("(claimed_by IS NULL OR claimed_by <> {u2})"),
                    ]);
                }
                for (i, mut alt) in alternatives.into_iter().enumerate() {
                    alt.extend(common_clauses(f, &mut binds));
                    let limit = next(&mut binds, Bind::Int(i64::from(f.limit.max(1))));
                    parts.push(format!(
                        "SELECT * FROM (SELECT {TASK_COLUMNS} FROM tasks WHERE {} ORDER BY {order} LIMIT {limit}) AS way{i}",
                        alt.join(" AND ")
                    ));
                }
                let limit = next(&mut binds, Bind::Int(i64::from(f.limit.max(1))));
                format!(
                    "SELECT * FROM ({}) AS inbox ORDER BY {order} LIMIT {limit}",
                    parts.join(" UNION ALL ")
                )
            }
            _ => {
                let mut clauses = Vec::new();
                if let Some((user, roles)) = &f.visible_to {
                    let u1 = next(&mut binds, Bind::Text(user.clone()));
                    let u2 = next(&mut binds, Bind::Text(user.clone()));
                    let mut alts = vec![format!("assignee = {u1}"), format!("claimed_by = {u2}")];
                    if !roles.is_empty() {
                        let list: Vec<String> = roles
                            .iter()
                            .map(|r| next(&mut binds, Bind::Text(r.clone())))
                            .collect();
                        alts.push(format!("role IN ({})", list.join(", ")));
                    }
                    clauses.push(format!("({})", alts.join(" OR ")));
                }
                clauses.extend(common_clauses(f, &mut binds));
                let limit = next(&mut binds, Bind::Int(i64::from(f.limit.max(1))));
                let filter = if clauses.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", clauses.join(" AND "))
                };
                format!("SELECT {TASK_COLUMNS} FROM tasks {filter} ORDER BY {order} LIMIT {limit}")
            }
        };
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(n) => q.bind(n),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        Ok(rows.iter().map(task_row).collect::<Result<_, _>>()?)
    }

    /// Claims (or, with `claim` false, gives back) a task for `user`.
    pub async fn claim_task(
        &self,
        id: &str,
        user: &str,
        roles: &[String],
        claim: bool,
    ) -> Result<Result<TaskRow, TaskRefused>, StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await? else {
            return Ok(Err(TaskRefused::NotFound));
        };
        let mut t = task_row(&row)?;
        if let Err(e) = may_act(&t, user, roles) {
            return Ok(Err(e));
        }
        if !claim && t.claimed_by.is_none() {
            return Ok(Err(TaskRefused::Conflict(format!(
                "task {id} is not claimed"
            ))));
        }
        let new = claim.then(|| user.to_owned());
        // The claim is checked again in the update: a concurrent claim loses here.
        let done = sqlx::query("UPDATE tasks SET claimed_by = $1 WHERE id = $2 AND status = 'open' AND (claimed_by IS NULL OR claimed_by = $3)")
            .bind(&new)
            .bind(id)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done != 1 {
            return Ok(Err(TaskRefused::Conflict(format!(
                "task {id} was claimed by someone else"
            ))));
        }
        tx.commit().await?;
        t.claimed_by = new;
        Ok(Ok(t))
    }

    /// Completes or rejects a task for `user` and queues `event` (the engine event) for
    /// its instance, in one transaction.
    pub async fn close_task(
        &self,
        id: &str,
        user: &str,
        roles: &[String],
        closing: &Closing,
        event: &str,
        now: i64,
    ) -> Result<Result<TaskRow, TaskRefused>, StoreError> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await? else {
            return Ok(Err(TaskRefused::NotFound));
        };
        let mut t = task_row(&row)?;
        if let Err(e) = may_act(&t, user, roles) {
            return Ok(Err(e));
        }
        let (status, result) = match closing {
            Closing::Completed(form) => ("completed", serde_json::json!({ "form": form })),
            Closing::Rejected(reason) => ("rejected", serde_json::json!({ "reason": reason })),
        };
        let done = sqlx::query("UPDATE tasks SET status = $1, closed_at = $2, closed_by = $3, result = $4, claimed_by = $5 WHERE id = $6 AND status = 'open' AND (claimed_by IS NULL OR claimed_by = $7)")
            .bind(status)
            .bind(now)
            .bind(user)
            .bind(result.to_string())
            .bind(user)
            .bind(id)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done != 1 {
            return Ok(Err(TaskRefused::Conflict(format!(
                "task {id} changed while it was being closed; try again"
            ))));
        }
        push_event(&mut tx, &t.instance_id, event, &format!("user:{user}"), now).await?;
        tx.commit().await?;
        t.status = status.into();
        t.closed_at = Some(now);
        t.closed_by = Some(user.to_owned());
        t.claimed_by = Some(user.to_owned());
        t.result = Some(result);
        Ok(Ok(t))
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

/// Pushes `b` and returns its placeholder.
fn next(binds: &mut Vec<Bind>, b: Bind) -> String {
    binds.push(b);
    format!("${}", binds.len())
}

/// The clauses of `f` besides visibility, their values pushed onto `binds`.
fn common_clauses(f: &TaskFilter, binds: &mut Vec<Bind>) -> Vec<String> {
    let mut clauses = Vec::new();
    if let Some(user) = &f.mine {
        let u1 = next(binds, Bind::Text(user.clone()));
        let u2 = next(binds, Bind::Text(user.clone()));
        clauses.push(format!("(assignee = {u1} OR claimed_by = {u2})"));
    }
    // A known status goes into the text: bound, it would make SQLite re-prepare the
    // statement at every execution (the partial indexes' `WHERE status = 'open'` is
    // checked against the bound value, which marks the statement expired on each
    // new binding), and it would hide those indexes from the plan of the page.
    let mut status = f.status.as_ref();
    if let Some(known) = status.and_then(|st| {
        ["open", "completed", "rejected", "cancelled"]
            .into_iter()
            .find(|k| k == st)
    }) {
        clauses.push(format!("status = '{known}'"));
        status = None;
    }
    for (col, v) in [
        ("role", &f.role),
        ("status", &status.cloned()),
        ("workflow", &f.workflow),
        ("instance_id", &f.instance),
    ] {
        if let Some(v) = v {
            let p = next(binds, Bind::Text(v.clone()));
            clauses.push(format!("{col} = {p}"));
        }
    }
    if let Some(t) = f.due_before {
        let p = next(binds, Bind::Int(t));
        clauses.push(format!("due_at IS NOT NULL AND due_at < {p}"));
    }
    if let Some((prio, created, id)) = &f.after {
        let p1 = next(binds, Bind::Int(*prio));
        let p2 = next(binds, Bind::Int(*prio));
        let c1 = next(binds, Bind::Int(*created));
        let c2 = next(binds, Bind::Int(*created));
        let i = next(binds, Bind::Text(id.clone()));
        clauses.push(format!(
            "(priority < {p1} OR (priority = {p2} AND (created_at > {c1} OR (created_at = {c2} AND id > {i}))))"
        ));
    }
    if let Some(number) = &f.case_number {
        let p = next(binds, Bind::Text(number.clone()));
        clauses.push(format!(
            "instance_id IN (SELECT id FROM instances WHERE case_number = {p})"
        ));
    }
    clauses
}
