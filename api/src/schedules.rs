//! Cron schedules over HTTP: list them with their state, pause and resume them, list their fires.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::caller::{Caller, Permission};
use super::model::{FireList, Schedule, ScheduleList};
use super::openapi::ProblemBody;
use super::{ApiResult, AppState, Problem};

/// The schedule routes with their OpenAPI operations, merged into the API router.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(fires))
}

/// List the cron schedules
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", operation_id = "list_schedules",
    responses(
        (status = 200, description = "every schedule with its policies and state, and when the scheduler last looked", body = ScheduleList),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn list(State(s): State<AppState>, caller: Caller) -> ApiResult<Json<ScheduleList>> {
    caller.require(&Permission::Admin)?;
    let items = s.rt.schedules().await?;
    Ok(Json(ScheduleList {
        items: items.into_iter().map(Into::into).collect(),
        evaluated_at: s.rt.schedules_evaluated_at(),
    }))
}

/// Pause a schedule
#[utoipa::path(post, path = "/v1/schedules/{workflow}/{schedule}/pause", tag = "schedules", operation_id = "pause_schedule",
    params(
        ("workflow" = String, Path, description = "the workflow id"),
        ("schedule" = String, Path, description = "the schedule id within the workflow"),
    ),
    responses(
        (status = 200, description = "the schedule as `GET /v1/schedules` lists it, now paused", body = Schedule),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such schedule", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn pause(
    State(s): State<AppState>,
    caller: Caller,
    Path((workflow, schedule)): Path<(String, String)>,
) -> ApiResult<Json<Schedule>> {
    caller.require(&Permission::Admin)?;
    set_paused(&s, &workflow, &schedule, true).await
}

/// Resume a schedule
#[utoipa::path(post, path = "/v1/schedules/{workflow}/{schedule}/resume", tag = "schedules", operation_id = "resume_schedule",
    params(
        ("workflow" = String, Path, description = "the workflow id"),
        ("schedule" = String, Path, description = "the schedule id within the workflow"),
    ),
    responses(
        (status = 200, description = "the schedule as `GET /v1/schedules` lists it, now resumed", body = Schedule),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such schedule", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn resume(
    State(s): State<AppState>,
    caller: Caller,
    Path((workflow, schedule)): Path<(String, String)>,
) -> ApiResult<Json<Schedule>> {
    caller.require(&Permission::Admin)?;
    set_paused(&s, &workflow, &schedule, false).await
}

async fn set_paused(
    s: &AppState,
    workflow: &str,
    schedule: &str,
    paused: bool,
) -> ApiResult<Json<Schedule>> {
    match s.rt.set_schedule_paused(workflow, schedule, paused).await? {
        Some(view) => Ok(Json(view.into())),
        None => Err(no_schedule(workflow, schedule)),
    }
}

fn no_schedule(workflow: &str, schedule: &str) -> Problem {
    Problem::not_found(format!("no schedule `{schedule}` in workflow `{workflow}`"))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FiresQuery {
    /// How many (default 100).
    limit: Option<u32>,
}

/// List a schedule's fires
#[utoipa::path(get, path = "/v1/schedules/{workflow}/{schedule}/fires", tag = "schedules", operation_id = "schedule_fires",
    params(
        ("workflow" = String, Path, description = "the workflow id"),
        ("schedule" = String, Path, description = "the schedule id within the workflow"),
        FiresQuery,
    ),
    responses(
        (status = 400, description = "a query parameter that cannot be read", body = ProblemBody, content_type = "application/problem+json"),
        (status = 200, description = "decided fires, newest first", body = FireList),
        (status = 403, description = "needs `admin`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such schedule, and no recorded fires", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn fires(
    State(s): State<AppState>,
    caller: Caller,
    Path((workflow, schedule)): Path<(String, String)>,
    Query(q): Query<FiresQuery>,
) -> ApiResult<Json<FireList>> {
    caller.require(&Permission::Admin)?;
    let catalog = s.rt.catalog();
    let known = catalog
        .get(&workflow)
        .is_some_and(|wf| wf.schedules.iter().any(|sc| sc.id == schedule));
    let rows =
        s.rt.schedule_fires(&workflow, &schedule, q.limit.unwrap_or(100))
            .await?;
    if !known && rows.is_empty() {
        return Err(no_schedule(&workflow, &schedule));
    }
    Ok(Json(FireList {
        items: rows.into_iter().map(Into::into).collect(),
    }))
}
