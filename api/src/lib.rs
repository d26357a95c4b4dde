//! The HTTP API (axum) under `/v1`, plus health, readiness and metrics.
//!
//! Errors are RFC 9457 problem details; internal errors are logged with an id and the
//! response carries only that id, never database or file details.

mod body;
pub mod caller;
pub mod console;
mod edge;
pub mod intake;
pub mod model;
pub mod openapi;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::DateTime;
use clearflow_core::engine::Event;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use caller::{Caller, Permission};
use clearflow_runtime::Runtime;
use clearflow_runtime::data::{ListFilter, Started};
use clearflow_runtime::worker::StartError;
use model::{
    Accepted, AuditPage, ClockReply, ClockSet, Delivered, DeliveredTo, InstanceDetail,
    InstancePage, MailList, Queued, SettledView, StartReply, ValidateReply, WaitingAt,
    WorkflowDetail, WorkflowList, WorkflowSummary,
};
use openapi::ProblemBody;

mod schedules;

mod tasks;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The runtime every handler calls.
    pub rt: Arc<Runtime>,
    /// Limits and listener settings.
    pub body_limit: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The roles and what they permit.
    pub auth: Arc<caller::Auth>,
    /// Public intake, status checks and the identity key.
    pub intake: intake::Shared,
}

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    title: &'static str,
    detail: String,
}

impl Problem {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            title,
            detail: detail.into(),
        }
    }
    fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not found", detail)
    }
    fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad request", detail)
    }
    fn internal(e: impl std::fmt::Display) -> Problem {
        let id = uuid::Uuid::now_v7();
        tracing::error!(error = %e, error_id = %id, "request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            format!("the server failed; error id {id}"),
        )
    }
}

impl Problem {
    /// The response: `body` as `application/problem+json` with `status`.
    fn respond(status: StatusCode, body: &openapi::ProblemBody) -> Response {
        (
            status,
            [(header::CONTENT_TYPE, openapi::PROBLEM_JSON)],
            serde_json::to_string(body).unwrap_or_default(),
        )
            .into_response()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = openapi::ProblemBody {
            kind: "about:blank".into(),
            title: self.title.into(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: None,
        };
        Problem::respond(self.status, &body)
    }
}

/// Error answers that axum makes itself (a query string or body it cannot read, a body
/// over the limit, a method the path does not have) become problem details too, so
/// every error is `application/problem+json` as the OpenAPI document says.
async fn problems_only(resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == openapi::PROBLEM_JSON.as_bytes());
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let title = status.canonical_reason().unwrap_or("error").to_lowercase();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let body = openapi::ProblemBody {
        kind: "about:blank".into(),
        detail: if text.is_empty() { title.clone() } else { text },
        title,
        status: status.as_u16(),
        errors: None,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(openapi::PROBLEM_JSON),
    );
    Response::from_parts(
        parts,
        axum::body::Body::from(serde_json::to_string(&body).unwrap_or_default()),
    )
}

impl From<clearflow_runtime::data::StoreError> for Problem {
    fn from(e: clearflow_runtime::data::StoreError) -> Problem {
        Problem::internal(e)
    }
}

type ApiResult<T> = Result<T, Problem>;

/// The router: the routes of [`routes`], the fallback, the body limit and authentication.
pub fn router(state: AppState) -> Router {
    let limit = state.body_limit;
    let web = state.rt.config().web.clone();
    let (routes, _) = routes(state.intake.body_limit()).split_for_parts();
    let console = web.enabled.then(|| {
        let staff = console::staff_router(state.clone());
        if web.public_listen.is_none() {
            staff.merge(console::public_pages(state.clone()))
        } else {
            staff
        }
    });
    let api = routes
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .layer(axum::middleware::map_response(problems_only))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            caller::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::check,
        ))
        .with_state(state);
    match console {
        Some(c) => api.merge(c),
        None => api,
    }
}

/// Every route, each registered with its OpenAPI operation (`routes!`): the router and
/// [`openapi::document`] are both built from this, so they cannot disagree. Register
/// routes only with `routes!`: `tests/openapi.rs` refuses plain axum registrations.
/// `intake_body_limit` is the body limit of `POST /v1/public/intake`.
pub(crate) fn routes(intake_body_limit: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(list_workflows))
        .routes(routes!(validate))
        .routes(routes!(show_workflow))
        .routes(routes!(graph))
        .routes(routes!(list_instances, start_instance))
        .routes(routes!(show_instance))
        .routes(routes!(signal))
        .routes(routes!(cancel))
        .routes(routes!(send_keyed))
        .routes(routes!(list_mail))
        .routes(routes!(retry_mail))
        .routes(routes!(get_clock, set_clock))
        .merge(schedules::routes())
        .routes(routes!(audit_log))
        .merge(tasks::routes())
        .merge(intake::routes(intake_body_limit))
        .routes(routes!(openapi_json))
}

/// Check that the process is up
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "the process is up", body = String, content_type = "text/plain", example = "ok")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Check that the daemon is ready
///
/// Ready when the store answers and every service (engine, mailer, scheduler, retention)
/// runs and has completed a round within its expected interval.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "the store answers and every service (engine, mailer, scheduler, retention) runs and has completed a round within its expected interval", body = String, content_type = "text/plain", example = "ready"),
        (status = 503, description = "the store does not answer, or a service is dead or stalled; `detail` names each", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn readyz(State(s): State<AppState>) -> Response {
    match s.rt.readiness().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            let detail = e.reasons.join("; ");
            tracing::warn!(reasons = %detail, "not ready");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not ready", detail).into_response()
        }
    }
}

/// Read the Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text: steps, commits, instances by workflow and status, mail and schedule counters", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn metrics(State(s): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(&Permission::Admin)?;
    let out = s.rt.metrics().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// List the deployed workflows
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows",
    responses((status = 200, description = "every deployed workflow", body = WorkflowList)))]
async fn list_workflows(State(s): State<AppState>, _: Caller) -> Json<WorkflowList> {
    let catalog = s.rt.catalog();
    Json(WorkflowList {
        items: catalog
            .workflows
            .values()
            .map(|w| WorkflowSummary::from(&**w))
            .collect(),
    })
}

/// Show a deployed workflow
#[utoipa::path(get, path = "/v1/workflows/{id}", tag = "workflows",
    params(("id" = String, Path, description = "the workflow id")),
    responses(
        (status = 200, description = "the workflow as listed, plus its `input_schema` and `step_ids`", body = WorkflowDetail),
        (status = 404, description = "no such workflow", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn show_workflow(
    State(s): State<AppState>,
    _: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkflowDetail>> {
    let catalog = s.rt.catalog();
    let wf = catalog
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("no workflow `{id}`")))?;
    Ok(Json(WorkflowDetail {
        summary: WorkflowSummary::from(&**wf),
        input_schema: wf.input_schema.as_ref().map(|s| s.json.clone()),
        step_ids: wf
            .nodes
            .iter()
            .filter(|n| n.named)
            .map(|n| n.id.clone())
            .collect(),
    }))
}

/// Draw a workflow as a Mermaid flowchart
#[utoipa::path(get, path = "/v1/workflows/{id}/graph", tag = "workflows",
    params(("id" = String, Path, description = "the workflow id")),
    responses(
        (status = 200, description = "a Mermaid flowchart", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 404, description = "no such workflow", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn graph(
    State(s): State<AppState>,
    _: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let catalog = s.rt.catalog();
    let wf = catalog
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("no workflow `{id}`")))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        clearflow_core::graph::mermaid(wf),
    )
        .into_response())
}

/// Validate a workflow file
///
/// Loads the file as the daemon would and answers every diagnostic; nothing is deployed.
#[utoipa::path(post, path = "/v1/workflows/validate", tag = "workflows",
    request_body(content = String, content_type = "application/yaml", description = "a workflow file"),
    responses(
        (status = 200, description = "every diagnostic of the file", body = ValidateReply),
        (status = 400, description = "the body is not UTF-8", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn validate(_: Caller, body: Bytes) -> ApiResult<Json<ValidateReply>> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| Problem::bad_request("the workflow file is not UTF-8"))?;
    let diags = match clearflow_core::load("request.yaml", text) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    };
    Ok(Json(ValidateReply {
        valid: diags.is_empty(),
        diagnostics: diags.into_iter().map(Into::into).collect(),
    }))
}

/// The longest `?wait=` the API accepts.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `?wait=`: answer once the instance has ended or parked, at most this long.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// How long to wait for the instance to end or park: `250ms`, `30s`, `1m` (or
    /// seconds without a unit); at most 60 s.
    wait: Option<String>,
}

impl WaitQuery {
    fn duration(&self) -> ApiResult<Option<std::time::Duration>> {
        let Some(text) = &self.wait else {
            return Ok(None);
        };
        let d = parse_wait(text).ok_or_else(|| {
            Problem::bad_request(format!(
                "`wait` must be a duration such as 250ms, 30s or 1m, not `{text}`"
            ))
        })?;
        if d > MAX_WAIT {
            return Err(Problem::bad_request(format!(
                "`wait` is at most {}s (asked for {text})",
                MAX_WAIT.as_secs()
            )));
        }
        Ok(Some(d))
    }
}

/// `250ms`, `30s`, `2m` or a number of seconds.
fn parse_wait(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let (digits, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        (t, 1_000)
    };
    let n: u64 = digits.parse().ok()?;
    Some(std::time::Duration::from_millis(n.checked_mul(unit_ms)?))
}

/// Waits up to `wait` for `id` to settle.
async fn settled_view(
    rt: &Runtime,
    id: &str,
    wait: std::time::Duration,
) -> ApiResult<Option<SettledView>> {
    let Some((row, state)) = rt.wait_settled(id, wait).await? else {
        return Ok(None);
    };
    let mut state: Value = serde_json::from_str(&state).map_err(Problem::internal)?;
    let take =
        |state: &mut Value, key: &str| state.get_mut(key).map(Value::take).unwrap_or(Value::Null);
    let wf = rt.version(&row.def_hash).await.map_err(Problem::internal)?;
    let waiting = match take(&mut state, "tokens") {
        Value::Object(tokens) => tokens
            .into_iter()
            .filter_map(|(_, mut t)| {
                let wait = t
                    .get_mut("wait")
                    .map(Value::take)
                    .filter(|w| !w.is_null())?;
                let node = t["node"].as_u64()? as usize;
                Some(WaitingAt {
                    step: wf.nodes.get(node)?.id.clone(),
                    wait,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some(SettledView {
        settled: clearflow_runtime::is_settled(
            &row.status,
            row.wake_at,
            rt.now().timestamp_millis(),
        ),
        status: row.status,
        outcome: row.outcome,
        ended_at: row.ended_at,
        wake_at: row.wake_at,
        data: take(&mut state, "data"),
        result: take(&mut state, "status"),
        waiting,
    }))
}

/// A start request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// The workflow id.
    workflow: String,
    /// The input, checked against the workflow's input schema (default: `{}`).
    #[serde(default)]
    input: Value,
    /// The same key never starts a second instance of the workflow.
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Start an instance
///
/// With `?wait=`, answers once the instance has ended or parked (or the wait ran out), with
/// its outcome or what it waits for. The same `idempotency_key` never starts a second
/// instance of the workflow.
#[utoipa::path(post, path = "/v1/instances", tag = "instances",
    params(WaitQuery),
    request_body = StartBody,
    responses(
        (status = 201, description = "a new instance", body = StartReply),
        (status = 200, description = "the instance already started with this idempotency key", body = StartReply),
        (status = 400, description = "the body is not a start request, or a bad `wait`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "the caller's roles may not start this workflow", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such workflow", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "the input does not match the workflow's input schema", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn start_instance(
    State(s): State<AppState>,
    caller: Caller,
    Query(w): Query<WaitQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let wait = w.duration()?;
    let body: StartBody = body::parse(&body)?;
    // Before looking the workflow up, so a caller learns nothing of workflows they
    // may not start.
    caller.require(&Permission::Start(body.workflow.clone()))?;
    let input = if body.input.is_null() {
        json!({})
    } else {
        body.input
    };
    match s
        .rt
        .start(&body.workflow, input, &caller.user, body.idempotency_key)
        .await
    {
        Ok(started) => {
            let (code, id, created) = match started {
                Started::New(id) => (StatusCode::CREATED, id, true),
                Started::Existing(id) => (StatusCode::OK, id, false),
            };
            let settled = match wait {
                Some(wait) => settled_view(&s.rt, &id, wait).await?,
                None => None,
            };
            Ok((
                code,
                Json(StartReply {
                    id,
                    created,
                    settled,
                }),
            )
                .into_response())
        }
        Err(StartError::UnknownWorkflow(w)) => {
            Err(Problem::not_found(format!("no workflow `{w}`")))
        }
        Err(StartError::Invalid(m)) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid input",
            m,
        )),
        Err(StartError::Store(e)) => Err(Problem::internal(e)),
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only instances of this workflow.
    workflow: Option<String>,
    /// Only this status (running, completed, failed, cancelled).
    status: Option<String>,
    /// Only children of this instance.
    parent: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<u32>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
}

/// List instances
#[utoipa::path(get, path = "/v1/instances", tag = "instances",
    params(ListQuery),
    responses(
        (status = 200, description = "one page of instances, newest first", body = InstancePage),
        (status = 400, description = "a bad `after` cursor", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `read_instances`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn list_instances(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<InstancePage>> {
    caller.require(&Permission::ReadInstances)?;
    let after = match &q.after {
        Some(cursor) => {
            let (at, id) = cursor
                .split_once('_')
                .ok_or_else(|| Problem::bad_request("bad `after` cursor"))?;
            Some((
                at.parse::<i64>()
                    .map_err(|_| Problem::bad_request("bad `after` cursor"))?,
                id.to_owned(),
            ))
        }
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let rows =
        s.rt.list_instances(&ListFilter {
            workflow: q.workflow,
            status: q.status,
            parent: q.parent,
            limit,
            after,
        })
        .await?;
    let next = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| format!("{}_{}", r.created_at, r.id)))
        .flatten();
    Ok(Json(InstancePage {
        items: rows.into_iter().map(Into::into).collect(),
        next,
    }))
}

/// Show an instance
///
/// With `?wait=`, answers once the instance has ended or parked, or the wait ran out.
#[utoipa::path(get, path = "/v1/instances/{id}", tag = "instances",
    params(("id" = String, Path, description = "the instance id"), WaitQuery),
    responses(
        (status = 200, description = "the instance with its state, pending work, children and history", body = InstanceDetail),
        (status = 403, description = "needs `read_instances`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such instance", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn show_instance(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(w): Query<WaitQuery>,
) -> ApiResult<Json<InstanceDetail>> {
    caller.require(&Permission::ReadInstances)?;
    if let Some(wait) = w.duration()? {
        s.rt.wait_settled(&id, wait).await?;
    }
    let (row, state) =
        s.rt.instance(&id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no instance `{id}`")))?;
    let mut state: Value = serde_json::from_str(&state).map_err(Problem::internal)?;
    let history = s.rt.history(&id).await?;
    let pending = s.rt.pending(&id).await?;
    let children =
        s.rt.list_instances(&ListFilter {
            parent: Some(id.clone()),
            limit: 1000,
            ..ListFilter::default()
        })
        .await?;
    let mut take = |pointer: &str, absent: Value| {
        state
            .pointer_mut(pointer)
            .map(Value::take)
            .unwrap_or(absent)
    };
    Ok(Json(InstanceDetail {
        instance: row.into(),
        data: take("/data", Value::Null),
        result: take("/status", Value::Null),
        links: take("/links", Value::Null),
        waiting: take("/tokens", Value::Null),
        provisional: take("/provisional/timers", json!({})),
        provisional_tasks: take("/provisional/tasks", json!({})),
        pending: pending.into_iter().map(Into::into).collect(),
        children: children.into_iter().map(Into::into).collect(),
        history: history.into_iter().map(Into::into).collect(),
    }))
}

/// An external event for one instance.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SignalBody {
    /// The event name.
    name: String,
    /// The correlation key.
    #[serde(default)]
    key: Option<String>,
    /// The event's data.
    #[serde(default)]
    data: Value,
}

/// Send an event to an instance
#[utoipa::path(post, path = "/v1/instances/{id}/signal", tag = "instances",
    params(("id" = String, Path, description = "the instance id")),
    request_body = SignalBody,
    responses(
        (status = 202, description = "queued for the instance", body = Delivered),
        (status = 400, description = "the body is not a signal", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no running instance with this id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn signal(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require(&Permission::Admin)?;
    let b: SignalBody = body::parse(&body)?;
    let event = Event::Signal {
        name: b.name,
        key: b.key,
        data: b.data,
    };
    if s.rt.send(&id, &event, &caller.user).await? {
        Ok((StatusCode::ACCEPTED, Json(Delivered { delivered: true })).into_response())
    } else {
        Err(Problem::not_found(format!("no running instance `{id}`")))
    }
}

/// A cancellation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Why (recorded in the history; default: "cancelled through the API").
    #[serde(default)]
    reason: Option<String>,
}

/// Cancel an instance
#[utoipa::path(post, path = "/v1/instances/{id}/cancel", tag = "instances",
    params(("id" = String, Path, description = "the instance id")),
    request_body(content = Option<CancelBody>, description = "optional; no body or `null` cancels without a reason"),
    responses(
        (status = 202, description = "the cancellation is queued", body = Accepted),
        (status = 400, description = "the body is not a cancellation", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no running instance with this id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn cancel(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require(&Permission::Admin)?;
    // No body and `null` both cancel without a reason.
    let b: CancelBody = if body.is_empty() {
        None
    } else {
        body::parse::<Option<CancelBody>>(&body)?
    }
    .unwrap_or(CancelBody { reason: None });
    let event = Event::Cancel {
        reason: b
            .reason
            .unwrap_or_else(|| "cancelled through the API".into()),
    };
    if s.rt.send(&id, &event, &caller.user).await? {
        Ok((StatusCode::ACCEPTED, Json(Accepted { accepted: true })).into_response())
    } else {
        Err(Problem::not_found(format!("no running instance `{id}`")))
    }
}

/// An external event for every instance waiting for its name and key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyedBody {
    /// The event name.
    name: String,
    /// The correlation key.
    key: String,
    /// The event's data.
    #[serde(default)]
    data: Value,
}

/// Send an event to every instance waiting for it
///
/// Queues the event for each instance waiting for this name and correlation key.
#[utoipa::path(post, path = "/v1/events", tag = "instances",
    request_body = KeyedBody,
    responses(
        (status = 200, description = "the instances the event was queued for", body = DeliveredTo),
        (status = 400, description = "the body is not an event", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn send_keyed(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<DeliveredTo>> {
    caller.require(&Permission::Admin)?;
    let b: KeyedBody = body::parse(&body)?;
    let event = Event::Signal {
        name: b.name.clone(),
        key: Some(b.key.clone()),
        data: b.data,
    };
    let payload = serde_json::to_string(&event).map_err(Problem::internal)?;
    let ids =
        s.rt.send_keyed(&b.name, &b.key, &payload, &caller.user)
            .await?;
    Ok(Json(DeliveredTo { delivered_to: ids }))
}

/// Read the daemon's clock
#[utoipa::path(get, path = "/v1/admin/clock", tag = "admin",
    responses(
        (status = 200, description = "the daemon's time", body = ClockReply),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn get_clock(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<ClockReply>> {
    caller.require(&Permission::Admin)?;
    Ok(Json(ClockReply {
        now: s.rt.now().to_rfc3339(),
        manual: s.rt.clock_is_manual(),
    }))
}

/// A move of the manual clock: exactly one of `set` and `advance_ms`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    /// The new time (RFC 3339).
    #[serde(default)]
    set: Option<String>,
    /// How far to move forward, in milliseconds (not negative).
    #[serde(default)]
    advance_ms: Option<i64>,
}

/// Move the manual clock
///
/// Only a daemon on the manual clock (`[clock] mode = "manual"`); a manual clock never goes
/// back.
#[utoipa::path(post, path = "/v1/admin/clock", tag = "admin",
    request_body = ClockBody,
    responses(
        (status = 200, description = "the clock's new time", body = ClockSet),
        (status = 400, description = "neither or both of `set` and `advance_ms`, or a bad time", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "the daemon runs on the system clock", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn set_clock(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<ClockSet>> {
    caller.require(&Permission::Admin)?;
    if !s.rt.clock_is_manual() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "system clock",
            "the daemon runs on the system clock; only a manual clock can be moved",
        ));
    }
    let b: ClockBody = body::parse(&body)?;
    let target = match (b.set, b.advance_ms) {
        (Some(t), None) => DateTime::parse_from_rfc3339(&t)
            .map_err(|e| Problem::bad_request(format!("`set`: {e}")))?
            .with_timezone(&chrono::Utc),
        (None, Some(ms)) if ms >= 0 => s.rt.now() + chrono::TimeDelta::milliseconds(ms),
        _ => {
            return Err(Problem::bad_request(
                "give either `set` (RFC 3339) or a non-negative `advance_ms`",
            ));
        }
    };
    let now = s.rt.set_clock(target).unwrap_or(target);
    Ok(Json(ClockSet {
        now: now.to_rfc3339(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MailQuery {
    /// Only messages in this state: queued, sent or dead.
    status: Option<String>,
    /// How many (default 100).
    limit: Option<u32>,
}

/// List the mail outbox
#[utoipa::path(get, path = "/v1/mail", tag = "mail",
    params(MailQuery),
    responses(
        (status = 200, description = "outbox messages, newest first", body = MailList),
        (status = 400, description = "an unknown `status`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn list_mail(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<MailQuery>,
) -> ApiResult<Json<MailList>> {
    caller.require(&Permission::Admin)?;
    if let Some(st) = q
        .status
        .as_deref()
        .filter(|st| !["queued", "sent", "dead"].contains(st))
    {
        return Err(Problem::bad_request(format!(
            "`status` is one of queued, sent, dead, not `{st}`"
        )));
    }
    let rows =
        s.rt.list_mail(q.status.as_deref(), q.limit.unwrap_or(100))
            .await?;
    Ok(Json(MailList {
        items: rows.into_iter().map(Into::into).collect(),
    }))
}

/// Retry a message
#[utoipa::path(post, path = "/v1/mail/{id}/retry", tag = "mail",
    params(("id" = String, Path, description = "the message id")),
    responses(
        (status = 200, description = "queued again", body = Queued),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no dead or queued message with this id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn retry_mail(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Queued>> {
    caller.require(&Permission::Admin)?;
    if s.rt.retry_mail(&id).await? {
        Ok(Json(Queued { queued: true }))
    } else {
        Err(Problem::not_found(format!(
            "no dead or queued message `{id}`"
        )))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Rows after this `seq` (the `next` of the previous page).
    after: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// Read the security audit log
#[utoipa::path(get, path = "/v1/audit", tag = "admin",
    params(AuditQuery),
    responses(
        (status = 400, description = "a query parameter that cannot be read", body = ProblemBody, content_type = "application/problem+json"),
        (status = 200, description = "one page of audit rows, oldest first", body = AuditPage),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn audit_log(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    caller.require(&Permission::Admin)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = s.rt.audit_log(q.after.unwrap_or(0), limit).await?;
    let next = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    Ok(Json(AuditPage {
        items: rows.into_iter().map(Into::into).collect(),
        next,
    }))
}

/// Read this OpenAPI document
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "this OpenAPI 3.1 document, byte for byte the committed `docs/openapi.json`; its schema is the OpenAPI specification's own, so it is not described here", body = Object)))]
async fn openapi_json(_: Caller) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::cached_json(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_wait;
    use std::time::Duration;

    #[test]
    fn wait_durations() {
        assert_eq!(parse_wait("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_wait("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_wait("soon"), None);
        assert_eq!(parse_wait("-1s"), None);
        assert_eq!(parse_wait(&format!("{}m", u64::MAX)), None);
    }
}
