//! The HTTP API (axum) under `/v1`, plus health, readiness and metrics.
//!
//! Errors are RFC 9457 problem details; internal errors are logged with an id and the
//! response carries only that id, never database or file details.

pub mod caller;
pub mod intake;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::DateTime;
use clearflow_core::engine::Event;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::registry::Registry;
use crate::store::{ListFilter, Started, Store};
use crate::worker::{StartError, Worker};
use caller::{Caller, Permission};

mod schedules;

mod tasks;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The engine shell.
    pub worker: Arc<Worker>,
    /// The mail sender.
    pub mailer: Arc<crate::mailer::Mailer>,
    /// Limits and listener settings.
    pub body_limit: usize,
    /// The cron scheduler.
    pub scheduler: Arc<crate::scheduler::Scheduler>,
    /// The roles and what they permit.
    pub auth: Arc<caller::Auth>,
    /// Public intake, status checks and the identity key.
    pub intake: intake::Shared,
}

impl AppState {
    fn store(&self) -> &Store {
        &self.worker.store
    }
    fn registry(&self) -> &Registry {
        &self.worker.registry
    }
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

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Problem {
        Problem::internal(e)
    }
}

type ApiResult<T> = Result<T, Problem>;

/// The router.
pub fn router(state: AppState) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/workflows", get(list_workflows))
        .route("/v1/workflows/validate", post(validate))
        .route("/v1/workflows/{id}", get(show_workflow))
        .route("/v1/workflows/{id}/graph", get(graph))
        .route("/v1/instances", get(list_instances).post(start_instance))
        .route("/v1/instances/{id}", get(show_instance))
        .route("/v1/instances/{id}/signal", post(signal))
        .route("/v1/instances/{id}/cancel", post(cancel))
        .route("/v1/events", post(send_keyed))
        .route("/v1/mail", get(list_mail))
        .route("/v1/mail/{id}/retry", post(retry_mail))
        .route("/v1/admin/clock", get(get_clock).post(set_clock))
        .merge(schedules::routes())
        .route("/v1/audit", get(audit_log))
        .merge(tasks::routes())
        .merge(intake::routes(&state))
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            caller::authenticate,
        ))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready",
                "the store does not answer",
            )
            .into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(&Permission::Admin)?;
    use std::sync::atomic::Ordering::Relaxed;
    let c = &s.worker.counters;
    let mut out = String::new();
    out += "# HELP clearflow_steps_total Steps executed and committed.\n# TYPE clearflow_steps_total counter\n";
    out += &format!("clearflow_steps_total {}\n", c.steps.load(Relaxed));
    out +=
        "# HELP clearflow_commits_total Engine commits.\n# TYPE clearflow_commits_total counter\n";
    out += &format!("clearflow_commits_total {}\n", c.commits.load(Relaxed));
    out += "# HELP clearflow_commit_errors_total Engine commits that failed and were retried.\n# TYPE clearflow_commit_errors_total counter\n";
    out += &format!(
        "clearflow_commit_errors_total {}\n",
        c.commit_errors.load(Relaxed)
    );
    let m = &s.mailer.counters;
    out += "# HELP clearflow_mail_sent_total Messages delivered.\n# TYPE clearflow_mail_sent_total counter\n";
    out += &format!("clearflow_mail_sent_total {}\n", m.sent.load(Relaxed));
    out += "# HELP clearflow_mail_retried_total Deliveries that failed temporarily and were rescheduled.\n# TYPE clearflow_mail_retried_total counter\n";
    out += &format!("clearflow_mail_retried_total {}\n", m.retried.load(Relaxed));
    out += "# HELP clearflow_mail_dead_total Messages given up as dead letters.\n# TYPE clearflow_mail_dead_total counter\n";
    out += &format!("clearflow_mail_dead_total {}\n", m.dead.load(Relaxed));
    out += &schedules::metrics(&s);
    out += "# HELP clearflow_instances Instances by workflow and status.\n# TYPE clearflow_instances gauge\n";
    for (wf, status, n) in s.store().counts().await? {
        out += &format!("clearflow_instances{{workflow=\"{wf}\",status=\"{status}\"}} {n}\n");
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

fn workflow_summary(wf: &clearflow_core::Workflow) -> Value {
    json!({
        "id": wf.id,
        "title": wf.title,
        "version": wf.hash,
        "file": wf.file,
        "steps": wf.nodes.len(),
        "roles": wf.roles,
        "concurrent_starts": wf.on_start.iter().map(|s| json!({"workflow": s.workflow, "as": s.alias})).collect::<Vec<_>>(),
        "schedules": wf.schedules.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
    })
}

async fn list_workflows(State(s): State<AppState>, _: Caller) -> Json<Value> {
    let catalog = s.registry().catalog();
    Json(
        json!({ "items": catalog.workflows.values().map(|w| workflow_summary(w)).collect::<Vec<_>>() }),
    )
}

async fn show_workflow(
    State(s): State<AppState>,
    _: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let catalog = s.registry().catalog();
    let wf = catalog
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("no workflow `{id}`")))?;
    let mut v = workflow_summary(wf);
    v["input_schema"] = wf
        .input_schema
        .as_ref()
        .map_or(Value::Null, |s| s.json.clone());
    v["step_ids"] = json!(
        wf.nodes
            .iter()
            .filter(|n| n.named)
            .map(|n| n.id.clone())
            .collect::<Vec<_>>()
    );
    Ok(Json(v))
}

async fn graph(
    State(s): State<AppState>,
    _: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let catalog = s.registry().catalog();
    let wf = catalog
        .get(&id)
        .ok_or_else(|| Problem::not_found(format!("no workflow `{id}`")))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        clearflow_core::graph::mermaid(wf),
    )
        .into_response())
}

async fn validate(_: Caller, body: Bytes) -> ApiResult<Json<Value>> {
    let text = std::str::from_utf8(&body)
        .map_err(|_| Problem::bad_request("the workflow file is not UTF-8"))?;
    let diags = match clearflow_core::load("request.yaml", text) {
        Ok(_) => Vec::new(),
        Err(d) => d,
    };
    Ok(Json(
        json!({ "valid": diags.is_empty(), "diagnostics": diags }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    workflow: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
}

async fn start_instance(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let body: StartBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("request body: {e}")))?;
    // Before looking the workflow up, so a caller learns nothing of workflows they
    // may not start.
    caller.require(&Permission::Start(body.workflow.clone()))?;
    let input = if body.input.is_null() {
        json!({})
    } else {
        body.input
    };
    match s
        .worker
        .start(&body.workflow, input, &caller.user, body.idempotency_key)
        .await
    {
        Ok(Started::New(id)) => Ok((
            StatusCode::CREATED,
            Json(json!({ "id": id, "created": true })),
        )
            .into_response()),
        Ok(Started::Existing(id)) => {
            Ok((StatusCode::OK, Json(json!({ "id": id, "created": false }))).into_response())
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    workflow: Option<String>,
    status: Option<String>,
    parent: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

async fn list_instances(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
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
    let rows = s
        .store()
        .list(&ListFilter {
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
    Ok(Json(json!({ "items": rows, "next": next })))
}

async fn show_instance(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&Permission::ReadInstances)?;
    let (row, state) = s
        .store()
        .instance(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no instance `{id}`")))?;
    let state: Value = serde_json::from_str(&state).map_err(Problem::internal)?;
    let history = s.store().history(&id).await?;
    let pending = s.store().pending(&id).await?;
    let children = s
        .store()
        .list(&ListFilter {
            parent: Some(id.clone()),
            limit: 1000,
            ..ListFilter::default()
        })
        .await?;
    Ok(Json(json!({
        "instance": row,
        "data": state.get("data"),
        "result": state.get("status"),
        "links": state.get("links"),
        "waiting": state.get("tokens"),
        "provisional": state.pointer("/provisional/timers").cloned().unwrap_or_else(|| json!({})),
        "provisional_tasks": state.pointer("/provisional/tasks").cloned().unwrap_or_else(|| json!({})),
        "pending": pending,
        "children": children,
        "history": history,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalBody {
    name: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    data: Value,
}

async fn signal(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require(&Permission::Admin)?;
    let b: SignalBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("request body: {e}")))?;
    let event = Event::Signal {
        name: b.name,
        key: b.key,
        data: b.data,
    };
    if s.worker.send(&id, &event, &caller.user).await? {
        Ok((StatusCode::ACCEPTED, Json(json!({ "delivered": true }))).into_response())
    } else {
        Err(Problem::not_found(format!("no running instance `{id}`")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn cancel(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    caller.require(&Permission::Admin)?;
    let b: CancelBody = if body.is_empty() {
        CancelBody { reason: None }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Problem::bad_request(format!("request body: {e}")))?
    };
    let event = Event::Cancel {
        reason: b
            .reason
            .unwrap_or_else(|| "cancelled through the API".into()),
    };
    if s.worker.send(&id, &event, &caller.user).await? {
        Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": true }))).into_response())
    } else {
        Err(Problem::not_found(format!("no running instance `{id}`")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyedBody {
    name: String,
    key: String,
    #[serde(default)]
    data: Value,
}

async fn send_keyed(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    let b: KeyedBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("request body: {e}")))?;
    let event = Event::Signal {
        name: b.name.clone(),
        key: Some(b.key.clone()),
        data: b.data,
    };
    let payload = serde_json::to_string(&event).map_err(Problem::internal)?;
    let now = crate::clock::ms(s.worker.clock.now());
    let ids = s
        .store()
        .send_keyed(&b.name, &b.key, &payload, &caller.user, now)
        .await?;
    s.worker.wake.notify_one();
    Ok(Json(json!({ "delivered_to": ids })))
}

async fn get_clock(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    Ok(Json(
        json!({ "now": s.worker.clock.now().to_rfc3339(), "manual": s.worker.clock.is_manual() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    #[serde(default)]
    set: Option<String>,
    #[serde(default)]
    advance_ms: Option<i64>,
}

async fn set_clock(
    State(s): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    if !s.worker.clock.is_manual() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "system clock",
            "the daemon runs on the system clock; only a manual clock can be moved",
        ));
    }
    let b: ClockBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("request body: {e}")))?;
    let target = match (b.set, b.advance_ms) {
        (Some(t), None) => DateTime::parse_from_rfc3339(&t)
            .map_err(|e| Problem::bad_request(format!("`set`: {e}")))?
            .with_timezone(&chrono::Utc),
        (None, Some(ms)) if ms >= 0 => s.worker.clock.now() + chrono::TimeDelta::milliseconds(ms),
        _ => {
            return Err(Problem::bad_request(
                "give either `set` (RFC 3339) or a non-negative `advance_ms`",
            ));
        }
    };
    let now = s.worker.clock.set(target).unwrap_or(target);
    s.worker.wake.notify_one();
    Ok(Json(json!({ "now": now.to_rfc3339() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MailQuery {
    status: Option<String>,
    limit: Option<u32>,
}

async fn list_mail(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<MailQuery>,
) -> ApiResult<Json<Value>> {
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
    let rows = s
        .store()
        .list_mail(q.status.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(json!({ "items": rows })))
}

async fn retry_mail(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    let now = crate::clock::ms(s.worker.clock.now());
    if s.store().retry_mail(&id, now).await? {
        s.mailer.wake.notify_one();
        Ok(Json(json!({ "queued": true })))
    } else {
        Err(Problem::not_found(format!(
            "no dead or queued message `{id}`"
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

async fn audit_log(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = s.store().audit_log(q.after.unwrap_or(0), limit).await?;
    let next = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    Ok(Json(json!({ "items": rows, "next": next })))
}
