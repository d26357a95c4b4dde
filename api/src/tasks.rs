//! The task API: list the caller's tasks, show one, claim, unclaim, complete, reject.
//!
//! The acting user is the authenticated [`Caller`]. A completion or rejection is checked
//! synchronously with the engine's own pure check (`check_task_action`: every form
//! violation, separation of duties), then the row is closed and the event queued for the
//! instance in one transaction. Status codes: 403 for a role the caller does not hold or
//! a separation-of-duties refusal (the message names both steps), 409 for a task claimed
//! by someone else or already closed, 422 for form violations (all of them listed).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clearflow_core::engine::{RefusalKind, TaskAction};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::caller::{Caller, Permission};
use super::model::{Task, TaskDetail, TaskPage};
use super::openapi::ProblemBody;
use super::{AppState, Problem};
use clearflow_runtime::clock::ms;
use clearflow_runtime::console::ActRefused;
use clearflow_runtime::data::{TaskFilter, TaskRefused, TaskRow, TaskView};

type Reply = Result<Response, Response>;

/// The task routes with their OpenAPI operations, merged into the main router.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(claim))
        .routes(routes!(unclaim))
        .routes(routes!(complete))
        .routes(routes!(reject))
}

/// A problem with the list of every reason (`errors`), as RFC 9457 allows extensions.
fn problem_list(status: StatusCode, title: &str, errors: Vec<String>) -> Response {
    let body = ProblemBody {
        kind: "about:blank".into(),
        title: title.into(),
        status: status.as_u16(),
        detail: errors.join("; "),
        errors: Some(errors),
    };
    Problem::respond(status, &body)
}

fn problem(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Response {
    Problem::new(status, title, detail).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    Problem::internal(e).into_response()
}

fn refused(r: TaskRefused, id: &str) -> Response {
    match r {
        TaskRefused::NotFound => problem(
            StatusCode::NOT_FOUND,
            "not found",
            format!("no task `{id}`"),
        ),
        TaskRefused::NotOpen(status) => problem(
            StatusCode::CONFLICT,
            "task closed",
            format!("task {id} is {status}"),
        ),
        TaskRefused::Forbidden(why) => problem(StatusCode::FORBIDDEN, "forbidden", why),
        TaskRefused::Conflict(why) => problem(StatusCode::CONFLICT, "claimed", why),
    }
}

/// Whether `c` may see `t`: a role they hold, assigned, claimed or closed by them, or a
/// reader of instances (who sees the same tasks in the instances' history anyway).
/// Whether `c` may see task `t`: its role, their own, or `read_instances`. The API and
/// the console both ask this.
pub(crate) fn visible(c: &Caller, t: &TaskRow) -> bool {
    t.role.as_deref().is_some_and(|r| c.has_role(r))
        || [&t.assignee, &t.claimed_by, &t.closed_by]
            .iter()
            .any(|u| u.as_deref() == Some(c.user.as_str()))
        || c.can(&Permission::ReadInstances)
}

/// Listing and showing tasks needs acting on them or reading instances.
fn may_look(c: &Caller) -> Result<(), Problem> {
    if c.can(&Permission::ReadInstances) {
        return Ok(());
    }
    c.require(&Permission::ActOnTasks)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// open (the default), completed, rejected, cancelled or any.
    status: Option<String>,
    /// Only tasks of this workflow.
    workflow: Option<String>,
    /// Only tasks of this instance.
    instance: Option<String>,
    /// Only tasks of this role.
    role: Option<String>,
    /// Only tasks assigned to or claimed by the caller.
    #[serde(default)]
    mine: bool,
    /// Only tasks past their due date.
    #[serde(default)]
    overdue: bool,
    /// Only tasks due before this time (RFC 3339).
    due_before: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// List tasks
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", operation_id = "list_tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "one page of the tasks the caller may see, highest priority first", body = TaskPage),
        (status = 400, description = "a bad `status`, `due_before` or `after`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `act_on_tasks` or `read_instances`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn list(State(s): State<AppState>, caller: Caller, Query(q): Query<ListQuery>) -> Reply {
    may_look(&caller).map_err(IntoResponse::into_response)?;
    let bad = |m: String| problem(StatusCode::BAD_REQUEST, "bad request", m);
    let status = match q.status.as_deref() {
        None => Some("open".to_owned()),
        Some("any") => None,
        Some(st @ ("open" | "completed" | "rejected" | "cancelled")) => Some(st.to_owned()),
        Some(other) => {
            return Err(bad(format!(
                "`status` is one of open, completed, rejected, cancelled, any, not `{other}`"
            )));
        }
    };
    let now = ms(s.rt.now());
    let mut due_before = match &q.due_before {
        Some(t) => Some(ms(chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| bad(format!("`due_before`: {e}")))?
            .with_timezone(&chrono::Utc))),
        None => None,
    };
    if q.overdue {
        due_before = Some(due_before.map_or(now, |d| d.min(now)));
    }
    let after = match &q.after {
        Some(cursor) => {
            let mut parts = cursor.splitn(3, '_');
            let parsed = (|| {
                let p = parts.next()?.parse::<i64>().ok()?;
                let c = parts.next()?.parse::<i64>().ok()?;
                Some((p, c, parts.next()?.to_owned()))
            })();
            Some(parsed.ok_or_else(|| bad("bad `after` cursor".into()))?)
        }
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let visible_to = (!caller.can(&Permission::ReadInstances))
        .then(|| (caller.user.clone(), caller.roles.clone()));
    let rows =
        s.rt.list_tasks(&TaskFilter {
            visible_to,
            mine: q.mine.then(|| caller.user.clone()),
            role: q.role,
            status,
            workflow: q.workflow,
            instance: q.instance,
            due_before,
            limit,
            after,
            ..TaskFilter::default()
        })
        .await
        .map_err(internal)?;
    let next = (rows.len() as u32 == limit)
        .then(|| {
            rows.last()
                .map(|r| format!("{}_{}_{}", r.priority, r.created_at, r.id))
        })
        .flatten();
    let items = rows.iter().map(|t| TaskView::of(t, now).into()).collect();
    Ok(Json(TaskPage { items, next }).into_response())
}

/// The task, if it exists and the caller may see it (404 otherwise, revealing nothing).
async fn visible_task(s: &AppState, caller: &Caller, id: &str) -> Result<TaskRow, Response> {
    match s.rt.task(id).await.map_err(internal)? {
        Some(t) if visible(caller, &t) => Ok(t),
        _ => Err(problem(
            StatusCode::NOT_FOUND,
            "not found",
            format!("no task `{id}`"),
        )),
    }
}

/// Show a task
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", operation_id = "show_task",
    params(("id" = String, Path, description = "the task id")),
    responses(
        (status = 200, description = "the task, with the step's `form` schema and `can_reject`", body = TaskDetail),
        (status = 403, description = "needs `act_on_tasks` or `read_instances`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such task, or not one the caller may see", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn show(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Reply {
    may_look(&caller).map_err(IntoResponse::into_response)?;
    let t = visible_task(&s, &caller, &id).await?;
    let now = ms(s.rt.now());
    // The form schema, so a client can show the form it must fill in.
    let mut detail = TaskDetail {
        task: TaskView::of(&t, now).into(),
        form: None,
        can_reject: None,
    };
    if let Some((row, _)) = s.rt.instance(&t.instance_id).await.map_err(internal)?
        && let Ok(wf) = s.rt.version(&row.def_hash).await
        && let Some(node) = wf.node_by_id(&t.step)
        && let clearflow_core::workflow::NodeKind::Task(step) = &node.kind
    {
        // `Some(null)` for a step without a form: present, and null on the wire.
        detail.form = Some(step.form.as_ref().map_or(Value::Null, |f| f.json.clone()));
        detail.can_reject = Some(step.on_reject.is_some());
    }
    Ok(Json(detail).into_response())
}

/// Claim a task
#[utoipa::path(post, path = "/v1/tasks/{id}/claim", tag = "tasks", operation_id = "claim_task",
    params(("id" = String, Path, description = "the task id")),
    responses(
        (status = 200, description = "the task, now claimed by the caller", body = Task),
        (status = 403, description = "needs `act_on_tasks` and the task's role", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such task, or not one the caller may see", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "separation of duties: the caller did a step this one must be apart from", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "claimed by someone else, or closed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn claim(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Reply {
    claim_or_unclaim(s, caller, id, true).await
}

/// Give a claimed task back
#[utoipa::path(post, path = "/v1/tasks/{id}/unclaim", tag = "tasks", operation_id = "unclaim_task",
    params(("id" = String, Path, description = "the task id")),
    responses(
        (status = 200, description = "the task, now given back", body = Task),
        (status = 403, description = "needs `act_on_tasks` and the task's role", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such task, or not one the caller may see", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "claimed by someone else, or closed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn unclaim(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Reply {
    claim_or_unclaim(s, caller, id, false).await
}

async fn claim_or_unclaim(s: AppState, caller: Caller, id: String, claim: bool) -> Reply {
    caller
        .require(&Permission::ActOnTasks)
        .map_err(IntoResponse::into_response)?;
    visible_task(&s, &caller, &id).await?;
    let now = ms(s.rt.now());
    match s
        .rt
        .claim_task(&id, &caller.user, &caller.roles, claim)
        .await
        .map_err(internal)?
    {
        Ok(t) => Ok(Json(Task::from(TaskView::of(&t, now))).into_response()),
        Err(r) => Err(act_refused(r, &id)),
    }
}

/// A completion.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    /// The filled-in form, checked against the step's form schema.
    form: Value,
}

/// A rejection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    /// Why (recorded in the history).
    reason: String,
}

/// Complete a task
///
/// The form is checked against the step's schema and separation of duties first; then the
/// task is closed and the instance moves on.
#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "tasks", operation_id = "complete_task",
    params(("id" = String, Path, description = "the task id")),
    request_body = CompleteBody,
    responses(
        (status = 202, description = "the task, now closed; the instance moves on", body = Task),
        (status = 400, description = "the body is not `{form}`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `act_on_tasks` and the task's role or assignment, or separation of duties refuses the caller (`errors` names both steps)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such task, or not one the caller may see", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "claimed by someone else, or closed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "the form violates the step's schema; `errors` lists every violation", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn complete(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let b: CompleteBody = crate::body::parse(&body).map_err(IntoResponse::into_response)?;
    act(s, caller, id, TaskAction::Complete { form: b.form }).await
}

/// Reject a task
///
/// Only a step with an `on_reject`; the task is closed and the instance takes its rejection
/// path.
#[utoipa::path(post, path = "/v1/tasks/{id}/reject", tag = "tasks", operation_id = "reject_task",
    params(("id" = String, Path, description = "the task id")),
    request_body = RejectBody,
    responses(
        (status = 202, description = "the task, now closed; the instance moves on", body = Task),
        (status = 400, description = "the body is not `{reason}`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `act_on_tasks` and the task's role or assignment, or separation of duties refuses the caller (`errors` names both steps)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such task, or not one the caller may see", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "claimed by someone else, or closed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "the step cannot be rejected (no `on_reject`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn reject(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let b: RejectBody = crate::body::parse(&body).map_err(IntoResponse::into_response)?;
    act(s, caller, id, TaskAction::Reject { reason: b.reason }).await
}

/// Checks an action with the engine's pure check, then closes the task and queues the
/// event in one transaction.
async fn act(s: AppState, caller: Caller, id: String, action: TaskAction) -> Reply {
    caller
        .require(&Permission::ActOnTasks)
        .map_err(IntoResponse::into_response)?;
    visible_task(&s, &caller, &id).await?;
    let now = ms(s.rt.now());
    match s
        .rt
        .act_on_task(&id, &caller.user, &caller.roles, action)
        .await
        .map_err(internal)?
    {
        Ok(t) => Ok((
            StatusCode::ACCEPTED,
            Json(Task::from(TaskView::of(&t, now))),
        )
            .into_response()),
        Err(r) => Err(act_refused(r, &id)),
    }
}

/// A refused claim, completion or rejection as a problem.
fn act_refused(r: ActRefused, id: &str) -> Response {
    match r {
        ActRefused::Task(r) => refused(r, id),
        ActRefused::Gone => problem(
            StatusCode::CONFLICT,
            "task closed",
            format!("the instance of task {id} is gone"),
        ),
        ActRefused::Check(refusals) => {
            let status = if refusals
                .iter()
                .any(|r| r.kind == RefusalKind::SeparationOfDuties)
            {
                (StatusCode::FORBIDDEN, "separation of duties")
            } else if refusals.iter().any(|r| r.kind == RefusalKind::NotOpen) {
                (StatusCode::CONFLICT, "task closed")
            } else if refusals.iter().any(|r| r.kind == RefusalKind::Form) {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid form")
            } else {
                (StatusCode::UNPROCESSABLE_ENTITY, "cannot reject")
            };
            let messages = refusals.into_iter().map(|r| r.message).collect();
            problem_list(status.0, status.1, messages)
        }
    }
}
