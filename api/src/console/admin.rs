//! Administration pages (the `admin` permission, as for the matching API endpoints):
//! workflows, instances with cancel, the outbox with retry, schedules with their next
//! runs, the audit log with verification, and live sessions with revoke.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use clearflow_core::engine::Event;
use clearflow_runtime::data::ListFilter;
use clearflow_web::render::{self, AdminAction, AdminRow, AdminSection, AdminView, AuditVerify};
use clearflow_web::{Frame, Locale};
use serde::Deserialize;

use super::{Audience, Form, Staff, error_page, page, see_other, when};
use crate::AppState;
use crate::caller::Permission;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { see_other("/admin/workflows") }))
        .route("/admin/{section}", get(section))
        .route("/admin/audit/verify", post(verify))
        .route("/admin/outbox/{id}/retry", post(retry))
        .route("/admin/instances/{id}/cancel", post(cancel))
        .route("/admin/sessions/{id}/revoke", post(revoke))
}

#[derive(Debug, Default, Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    lang: Option<String>,
}

/// The refusal page when the user may not administer (`None`: they may).
fn refused(staff: &Staff) -> Option<Response> {
    staff
        .caller
        .require(&Permission::Admin)
        .err()
        .map(|_| error_page(Audience::Staff, StatusCode::FORBIDDEN, staff.locale))
}

fn action(l: Locale, path: String, key: &str) -> AdminAction {
    AdminAction {
        action: path,
        label: l.t(key).to_owned(),
    }
}

async fn section(
    State(s): State<AppState>,
    staff: Staff,
    Path(section): Path<String>,
    Query(q): Query<Search>,
) -> Response {
    if let Some(r) = refused(&staff) {
        return r;
    }
    let _ = q.lang;
    let l = staff.locale;
    let tz = chrono_tz::Asia::Shanghai;
    let query = q.q.trim().to_owned();
    let col = |keys: &[&str]| keys.iter().map(|k| l.t(k).to_owned()).collect::<Vec<_>>();
    let (which, columns, rows) = match section.as_str() {
        "workflows" => {
            let catalog = s.rt.catalog();
            let rows = catalog
                .workflows
                .values()
                .filter(|w| query.is_empty() || w.id.contains(&query))
                .map(|w| AdminRow {
                    cells: vec![
                        w.id.clone(),
                        w.title.clone().unwrap_or_default(),
                        w.hash.chars().take(12).collect(),
                        w.file.clone(),
                    ],
                    link: None,
                    actions: vec![],
                })
                .collect();
            (
                AdminSection::Workflows,
                col(&[
                    "admin.col_id",
                    "admin.col_title",
                    "admin.col_version",
                    "admin.col_file",
                ]),
                rows,
            )
        }
        "instances" => {
            let list = match s
                .rt
                .list_instances(&ListFilter {
                    workflow: (!query.is_empty()).then(|| query.clone()),
                    limit: 200,
                    ..ListFilter::default()
                })
                .await
            {
                Ok(l) => l,
                Err(e) => return super::staff_internal(l, e),
            };
            let rows = list
                .into_iter()
                .map(|i| AdminRow {
                    actions: if i.status == "running" {
                        vec![action(
                            l,
                            format!("/admin/instances/{}/cancel", i.id),
                            "admin.cancel",
                        )]
                    } else {
                        vec![]
                    },
                    link: Some(format!("/cases/{}", i.id)),
                    cells: vec![i.id, i.workflow, i.status, when(i.created_at, tz)],
                })
                .collect();
            (
                AdminSection::Instances,
                col(&[
                    "admin.col_id",
                    "admin.col_workflow",
                    "admin.col_status",
                    "admin.col_created",
                ]),
                rows,
            )
        }
        "outbox" => {
            let status = (!query.is_empty()).then_some(query.as_str());
            let list = match s.rt.list_mail(status, 200).await {
                Ok(l) => l,
                Err(e) => return super::staff_internal(l, e),
            };
            let rows = list
                .into_iter()
                .map(|m| AdminRow {
                    actions: if m.status == "dead" {
                        vec![action(
                            l,
                            format!("/admin/outbox/{}/retry", m.id),
                            "admin.retry",
                        )]
                    } else {
                        vec![]
                    },
                    link: m.instance_id.as_ref().map(|i| format!("/cases/{i}")),
                    cells: vec![
                        m.subject,
                        m.status,
                        m.attempts.to_string(),
                        m.last_error.unwrap_or_default(),
                        when(m.sent_at.unwrap_or(m.created_at), tz),
                    ],
                })
                .collect();
            (
                AdminSection::Outbox,
                col(&[
                    "admin.col_subject",
                    "admin.col_status",
                    "admin.col_attempts",
                    "admin.col_error",
                    "admin.col_at",
                ]),
                rows,
            )
        }
        "schedules" => {
            let list = match s.rt.schedules().await {
                Ok(l) => l,
                Err(e) => return super::staff_internal(l, e),
            };
            let rows = list
                .into_iter()
                .map(|v| AdminRow {
                    cells: vec![
                        format!("{} / {}", v.workflow, v.schedule),
                        v.cron,
                        v.timezone,
                        v.next_run
                            .map(|t| when(t.timestamp_millis(), tz))
                            .unwrap_or_default(),
                        if v.paused {
                            l.t("admin.paused").into()
                        } else {
                            String::new()
                        },
                    ],
                    link: None,
                    actions: vec![],
                })
                .collect();
            (
                AdminSection::Schedules,
                col(&[
                    "admin.col_id",
                    "admin.col_cron",
                    "admin.col_zone",
                    "admin.col_next",
                    "admin.col_status",
                ]),
                rows,
            )
        }
        "audit" => {
            let list = match s.rt.audit_log(0, 1_000_000).await {
                Ok(l) => l,
                Err(e) => return super::staff_internal(l, e),
            };
            let rows = list
                .into_iter()
                .rev()
                .filter(|a| query.is_empty() || a.kind.contains(&query) || a.actor.contains(&query))
                .take(200)
                .map(|a| AdminRow {
                    link: a.instance_id.as_ref().map(|i| format!("/cases/{i}")),
                    cells: vec![a.seq.to_string(), when(a.at, tz), a.kind, a.actor],
                    actions: vec![],
                })
                .collect();
            (
                AdminSection::Audit,
                col(&[
                    "admin.col_seq",
                    "admin.col_at",
                    "admin.col_kind",
                    "admin.col_actor",
                ]),
                rows,
            )
        }
        "users" => {
            let idle = (s.rt.config().web.session_idle_minutes * 60_000) as i64;
            let sessions = s.rt.live_sessions(idle).await.unwrap_or_default();
            let directory = s.rt.directory();
            let rows = directory
                .users()
                .filter(|u| query.is_empty() || u.id.contains(&query) || u.name.contains(&query))
                .map(|u| {
                    let mine: Vec<_> = sessions.iter().filter(|x| x.user == u.id).collect();
                    AdminRow {
                        cells: vec![
                            u.id.clone(),
                            u.name.clone(),
                            u.roles.join(", "),
                            mine.len().to_string(),
                        ],
                        link: None,
                        actions: mine
                            .iter()
                            .map(|x| {
                                action(
                                    l,
                                    format!("/admin/sessions/{}/revoke", x.id_hash),
                                    "admin.revoke",
                                )
                            })
                            .collect(),
                    }
                })
                .collect();
            (
                AdminSection::Users,
                col(&[
                    "admin.col_id",
                    "admin.col_name",
                    "admin.col_roles",
                    "admin.col_sessions",
                ]),
                rows,
            )
        }
        _ => return error_page(Audience::Staff, StatusCode::NOT_FOUND, l),
    };
    render_admin(&staff, which, query, columns, rows, None)
}

fn render_admin(
    staff: &Staff,
    section: AdminSection,
    query: String,
    columns: Vec<String>,
    rows: Vec<AdminRow>,
    verify: Option<AuditVerify>,
) -> Response {
    let csrf = staff.csrf();
    page(
        Audience::Staff,
        StatusCode::OK,
        render::admin(
            Frame {
                locale: staff.locale,
                csrf: &csrf,
            },
            &AdminView {
                section,
                query,
                columns,
                rows,
                verify,
            },
        ),
    )
}

/// The refusal of a post here without the admin permission or the CSRF token.
fn post_refused(staff: &Staff, body: &Bytes) -> Option<Response> {
    if let Some(r) = refused(staff) {
        return Some(r);
    }
    let f = Form::new(body.clone());
    (!staff.session.csrf_ok(f.get("csrf").unwrap_or_default()))
        .then(|| error_page(Audience::Staff, StatusCode::FORBIDDEN, staff.locale))
}

async fn verify(State(s): State<AppState>, staff: Staff, body: Bytes) -> Response {
    if let Some(r) = post_refused(&staff, &body) {
        return r;
    }
    let v = match s.rt.verify_audit().await {
        Ok(v) => v,
        Err(e) => return super::staff_internal(staff.locale, e),
    };
    let at = v.breaches.first().map(|b| {
        format!(
            "{} #{}",
            b.table,
            b.id.map(|i| i.to_string()).unwrap_or_default()
        )
    });
    render_admin(
        &staff,
        AdminSection::Audit,
        String::new(),
        vec![],
        vec![],
        Some(AuditVerify {
            ok: v.breaches.is_empty(),
            at,
        }),
    )
}

async fn retry(
    State(s): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = post_refused(&staff, &body) {
        return r;
    }
    match s.rt.retry_mail(&id).await {
        Ok(_) => see_other("/admin/outbox"),
        Err(e) => super::staff_internal(staff.locale, e),
    }
}

async fn cancel(
    State(s): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = post_refused(&staff, &body) {
        return r;
    }
    let event = Event::Cancel {
        reason: format!("cancelled in the web console by {}", staff.caller.user),
    };
    match s.rt.send(&id, &event, &staff.caller.user).await {
        Ok(_) => see_other("/admin/instances"),
        Err(e) => super::staff_internal(staff.locale, e),
    }
}

async fn revoke(
    State(s): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = post_refused(&staff, &body) {
        return r;
    }
    match s.rt.revoke_session(&id).await {
        Ok(true) => {
            super::session::audit(
                &s,
                "auth.session_revoked",
                &staff.caller.user,
                serde_json::json!({ "session": id.chars().take(12).collect::<String>() }),
            )
            .await;
            see_other("/admin/users")
        }
        Ok(false) => see_other("/admin/users"),
        Err(e) => super::staff_internal(staff.locale, e),
    }
}
