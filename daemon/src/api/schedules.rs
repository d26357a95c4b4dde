//! Cron schedules over HTTP: list them with their state, pause and resume them, list their fires.

use std::sync::atomic::Ordering::Relaxed;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::caller::{Caller, Permission};
use super::{ApiResult, AppState, Problem};

/// The schedule routes, merged into the API router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/schedules", get(list))
        .route("/v1/schedules/{workflow}/{schedule}/pause", post(pause))
        .route("/v1/schedules/{workflow}/{schedule}/resume", post(resume))
        .route("/v1/schedules/{workflow}/{schedule}/fires", get(fires))
}

/// The scheduler's lines of `/metrics`.
pub fn metrics(s: &AppState) -> String {
    let c = &s.scheduler.counters;
    let mut out = String::new();
    for (name, help, value) in [
        (
            "clearflow_schedule_fires_total",
            "Schedule fires that started an instance (decided by this daemon).",
            c.fired.load(Relaxed),
        ),
        (
            "clearflow_schedule_skips_total",
            "Schedule fires skipped because an earlier fire's instance was still running.",
            c.skipped.load(Relaxed),
        ),
        (
            "clearflow_schedule_failures_total",
            "Schedule fires whose start was refused.",
            c.failed.load(Relaxed),
        ),
        (
            "clearflow_schedule_cancels_total",
            "Running instances cancelled by a cancel_previous schedule.",
            c.cancelled.load(Relaxed),
        ),
    ] {
        out += &format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
    }
    out
}

async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    let items = s.scheduler.list().await?;
    Ok(Json(json!({
        "items": items,
        "evaluated_at": s.scheduler.evaluated_at(),
    })))
}

async fn pause(
    State(s): State<AppState>,
    caller: Caller,
    Path((workflow, schedule)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    set_paused(&s, &workflow, &schedule, true).await
}

async fn resume(
    State(s): State<AppState>,
    caller: Caller,
    Path((workflow, schedule)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    set_paused(&s, &workflow, &schedule, false).await
}

async fn set_paused(
    s: &AppState,
    workflow: &str,
    schedule: &str,
    paused: bool,
) -> ApiResult<Json<Value>> {
    match s.scheduler.set_paused(workflow, schedule, paused).await? {
        Some(view) => Ok(Json(json!(view))),
        None => Err(no_schedule(workflow, schedule)),
    }
}

fn no_schedule(workflow: &str, schedule: &str) -> Problem {
    Problem::not_found(format!("no schedule `{schedule}` in workflow `{workflow}`"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FiresQuery {
    limit: Option<u32>,
}

async fn fires(
    State(s): State<AppState>,
    caller: Caller,
    Path((workflow, schedule)): Path<(String, String)>,
    Query(q): Query<FiresQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(&Permission::Admin)?;
    let catalog = s.worker.registry.catalog();
    let known = catalog
        .get(&workflow)
        .is_some_and(|wf| wf.schedules.iter().any(|sc| sc.id == schedule));
    let rows = s
        .worker
        .store
        .schedule_fires(&workflow, &schedule, q.limit.unwrap_or(100))
        .await?;
    if !known && rows.is_empty() {
        return Err(no_schedule(&workflow, &schedule));
    }
    let items: Vec<Value> = rows
        .iter()
        .map(|f| {
            json!({
                "fire_time": crate::clock::from_ms(f.fire_time),
                "outcome": f.outcome,
                "instance_id": f.instance_id,
                "reason": f.reason,
                "decided_at": crate::clock::from_ms(f.decided_at),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}
