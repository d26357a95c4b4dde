//! Staff pages: sign-in with password and TOTP (enrolment with recovery codes), the
//! inbox, the task page with its schema form, and the case page.
//!
//! Every page takes a [`Staff`] (a live session turned into the same [`Caller`] a token
//! gives) and checks the permission the matching API endpoint checks. Sign-in, its
//! failures, lockouts and sign-out are recorded in the audit chain.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use clearflow_core::engine::{Instance, RefusalKind, TaskAction, Wait};
use clearflow_runtime::clock::ms;
use clearflow_runtime::console::{ActRefused, SessionRow, SessionStage};
use clearflow_runtime::data::{ListFilter, TaskFilter, TaskRefused, TaskRow};
use clearflow_runtime::intake::IdentityReadError;
use clearflow_web::auth::{self, Lockout};
use clearflow_web::render::{
    self, CaseLink, CaseMail, CaseTask, CaseTimer, CaseView, EnrolView, IdentityPanel,
    IdentityView, InboxFilter, InboxRow, InboxView, MessageView, Refusal, SignInView, SummaryItem,
    TaskView, TimelineRow,
};
use clearflow_web::{Frame, Locale, form};
use serde::Deserialize;
use serde_json::{Value, json};

use super::session::{self, Pending, audit, clear_cookie, set_cookie};
use super::{
    Audience, Form, Staff, error_page, locale, page, same_site, see_other,
    staff_internal as internal, when,
};
use crate::AppState;
use crate::caller::Permission;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-in/totp", get(totp_page).post(totp))
        .route("/enrol", get(enrol_page).post(enrol))
        .route("/sign-out", post(sign_out))
        .route("/inbox", get(inbox))
        .route("/tasks/{id}", get(task_page))
        .route("/tasks/{id}/{action}", post(task_action))
        .route("/cases/{id}", get(case_page))
        .route("/cases/{id}/tasks/{n}", get(case_task))
        .route("/cases/{id}/messages", post(case_message))
        .route("/cases/{id}/identity", post(case_identity))
}

fn frame(locale: Locale, csrf: &str) -> Frame<'_> {
    Frame { locale, csrf }
}

// ---- sign-in -------------------------------------------------------------------------

/// An Argon2id hash no password matches, verified for unknown users so that a wrong user
/// name costs what a wrong password costs.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        auth::hash_password("clearflow dummy password", auth::random())
            .expect("argon2 with default parameters")
    })
}

fn sign_in_view(l: Locale, step: &str, user: &str, error: Option<&str>) -> Response {
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(
        Audience::Staff,
        status,
        render::sign_in(
            frame(l, ""),
            &SignInView {
                step: step.into(),
                user: user.into(),
                error: error.map(str::to_owned),
            },
        ),
    )
}

async fn sign_in_page(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Some(user) = session::proxy_user(&s, &parts) {
        return proxy_sign_in(&s, &parts, &user).await;
    }
    sign_in_view(locale(&parts, None, None), "password", "", None)
}

/// Signs in the user a trusted proxy vouches for (`[web.proxy_auth]`): an active session
/// at once, no password or second factor (the proxy's sign-in stands for both), audited
/// as `auth.sign_in` with `method: proxy`. A user the users file does not know is
/// refused and audited.
async fn proxy_sign_in(s: &AppState, parts: &Parts, user: &str) -> Response {
    let l = locale(parts, None, None);
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    if s.rt.directory().user(user).is_none() {
        audit(
            s,
            "auth.sign_in_refused",
            user,
            json!({ "reason": "unknown user", "method": "proxy", "proxy": peer }),
        )
        .await;
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let token = auth::new_session(auth::random());
    let now = ms(s.rt.now());
    let row = SessionRow {
        id_hash: token.hash,
        user: user.to_owned(),
        stage: SessionStage::Active,
        created_at: now,
        last_seen: now,
        revoked_at: None,
        enrol_secret: None,
    };
    if let Err(e) = s.rt.create_session(&row).await {
        return internal(l, e);
    }
    audit(
        s,
        "auth.sign_in",
        user,
        json!({ "method": "proxy", "proxy": peer }),
    )
    .await;
    let mut resp = see_other("/inbox");
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(s, &token.cookie));
    resp
}

fn lockout(s: &AppState) -> Lockout {
    Lockout {
        free: s.rt.config().web.lockout_after,
        ..Lockout::default()
    }
}

/// Whether `user` must wait before trying again.
async fn locked(s: &AppState, user: &str) -> bool {
    let Ok(Some(c)) = s.rt.credential(user).await else {
        return false;
    };
    let now = (ms(s.rt.now()) / 1000) as u64;
    lockout(s)
        .locked_until(
            c.failures as u32,
            (c.last_failure.unwrap_or(0) / 1000) as u64,
            now,
        )
        .is_some()
}

/// Counts a failure and records it (and the lockout it causes).
async fn failed(s: &AppState, user: &str, stage: &str) {
    let failures = s.rt.sign_in_failed(user).await.unwrap_or(0);
    audit(
        s,
        "auth.sign_in_failed",
        user,
        json!({ "stage": stage, "failures": failures }),
    )
    .await;
    if failures as u32 == lockout(s).free {
        tracing::warn!(%user, failures, "staff account locked after repeated failures");
        audit(s, "auth.locked", user, json!({ "failures": failures })).await;
    }
}

async fn read_form(req: Request) -> (Parts, Form) {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, super::FORM_LIMIT)
        .await
        .unwrap_or_default();
    (parts, Form::new(bytes))
}

async fn sign_in(State(s): State<AppState>, req: Request) -> Response {
    let (parts, f) = read_form(req).await;
    let l = locale(&parts, Some(&f), None);
    if !same_site(&parts.headers, &[]) {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let user = f.text("user");
    let password = f.get("password").unwrap_or_default().to_owned();
    if user.is_empty() || user.len() > 200 || password.len() > 1000 {
        return sign_in_view(l, "password", &user, Some("failed"));
    }
    if locked(&s, &user).await {
        audit(
            &s,
            "auth.sign_in_refused",
            &user,
            json!({ "reason": "locked" }),
        )
        .await;
        return sign_in_view(l, "password", &user, Some("locked"));
    }
    let credential = match s.rt.credential(&user).await {
        Ok(c) => c,
        Err(e) => {
            // Fails closed: a credential that does not read back signs nobody in.
            tracing::error!(error = %e, "reading a credential");
            None
        }
    };
    let known = s.rt.directory().user(&user).is_some();
    let stored = credential
        .as_ref()
        .filter(|_| known)
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let ok = tokio::task::spawn_blocking(move || {
        auth::verify_password(&password, &stored).unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    let Some(credential) = credential.filter(|_| ok && known) else {
        failed(&s, &user, "password").await;
        return sign_in_view(l, "password", &user, Some("failed"));
    };
    // The password is right: a session at the second factor (or its enrolment).
    let token = auth::new_session(auth::random());
    let now = ms(s.rt.now());
    let (stage, enrol_secret, to) = match credential.totp_secret {
        Some(_) => (SessionStage::Password, None, "/sign-in/totp"),
        None if !s.rt.can_seal_secrets() => {
            tracing::error!(
                "a second factor cannot be enrolled: no identity key is configured ([identity] key_file), so its secret could not be sealed"
            );
            return error_page(Audience::Staff, StatusCode::SERVICE_UNAVAILABLE, l);
        }
        None => {
            let secret: [u8; 20] = auth::random();
            let codes = auth::recovery_codes(auth::random());
            let pending = json!({ "secret": secret.to_vec(), "codes": codes }).to_string();
            (SessionStage::Enrol, Some(pending), "/enrol")
        }
    };
    let row = SessionRow {
        id_hash: token.hash,
        user: user.clone(),
        stage,
        created_at: now,
        last_seen: now,
        revoked_at: None,
        enrol_secret,
    };
    if let Err(e) = s.rt.create_session(&row).await {
        tracing::error!(error = %e, "storing a session");
        return error_page(Audience::Staff, StatusCode::INTERNAL_SERVER_ERROR, l);
    }
    let mut resp = see_other(to);
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&s, &token.cookie));
    resp
}

async fn totp_page(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let l = locale(&parts, None, None);
    match session::pending(&s, &parts, SessionStage::Password).await {
        Some(p) => page(
            Audience::Staff,
            StatusCode::OK,
            render::sign_in(
                frame(l, &p.csrf()),
                &SignInView {
                    step: "totp".into(),
                    ..Default::default()
                },
            ),
        ),
        None => see_other("/sign-in"),
    }
}

/// Completes sign-in: the session becomes active, failures are cleared, it is audited.
async fn activate(s: &AppState, p: &Pending, how: &str) -> Response {
    if let Err(e) =
        s.rt.set_session_stage(&p.row.id_hash, SessionStage::Active)
            .await
    {
        tracing::error!(error = %e, "activating a session");
        return error_page(
            Audience::Staff,
            StatusCode::INTERNAL_SERVER_ERROR,
            Locale::ZhCn,
        );
    }
    let _ = s.rt.sign_in_succeeded(&p.row.user).await;
    audit(
        s,
        "auth.sign_in",
        &p.row.user,
        json!({ "second_factor": how }),
    )
    .await;
    see_other("/inbox")
}

async fn totp(State(s): State<AppState>, req: Request) -> Response {
    let (parts, f) = read_form(req).await;
    let l = locale(&parts, Some(&f), None);
    let Some(p) = session::pending(&s, &parts, SessionStage::Password).await else {
        return see_other("/sign-in");
    };
    if !p.csrf_ok(f.get("csrf").unwrap_or_default()) {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let user = p.row.user.clone();
    let again = |error| {
        page(
            Audience::Staff,
            StatusCode::UNAUTHORIZED,
            render::sign_in(
                frame(l, &p.csrf()),
                &SignInView {
                    step: "totp".into(),
                    error: Some(error),
                    ..Default::default()
                },
            ),
        )
    };
    if locked(&s, &user).await {
        let _ = s.rt.revoke_session(&p.row.id_hash).await;
        audit(
            &s,
            "auth.sign_in_refused",
            &user,
            json!({ "reason": "locked" }),
        )
        .await;
        return sign_in_view(l, "password", &user, Some("locked"));
    }
    let code = f.text("code");
    let Ok(Some(c)) = s.rt.credential(&user).await else {
        return see_other("/sign-in");
    };
    let secret = c.totp_secret.as_deref().and_then(auth::decode_base32);
    let now = (ms(s.rt.now()) / 1000) as u64;
    let step = secret.and_then(|secret| {
        auth::verify_totp(&secret, &code, now, c.totp_last_step.map(|v| v as u64))
    });
    if let Some(step) = step
        && s.rt
            .use_totp_step(&user, step as i64)
            .await
            .unwrap_or(false)
    {
        return activate(&s, &p, "totp").await;
    }
    if code.contains('-')
        && s.rt
            .use_recovery_code(&user, &auth::hash_recovery_code(&code))
            .await
            .unwrap_or(false)
    {
        audit(&s, "auth.recovery_code_used", &user, json!({})).await;
        return activate(&s, &p, "recovery_code").await;
    }
    failed(&s, &user, "totp").await;
    again("failed".into())
}

/// The enrolment in progress on a session: the secret and the recovery codes.
fn enrolment(p: &Pending) -> Option<(Vec<u8>, Vec<String>)> {
    let v: Value = serde_json::from_str(p.row.enrol_secret.as_deref()?).ok()?;
    let secret: Vec<u8> = serde_json::from_value(v["secret"].clone()).ok()?;
    let codes: Vec<String> = serde_json::from_value(v["codes"].clone()).ok()?;
    Some((secret, codes))
}

fn enrol_view(s: &AppState, l: Locale, p: &Pending, error: bool) -> Response {
    let Some((secret, codes)) = enrolment(p) else {
        return see_other("/sign-in");
    };
    let mut raw = [0u8; 20];
    raw.copy_from_slice(&secret[..20.min(secret.len())]);
    let issuer = s.rt.config().mail.domain.clone();
    let e = auth::enrol(&format!("clearflow {issuer}"), &p.row.user, raw);
    let qr = auth::qr_svg(&e.uri).unwrap_or_default();
    let status = if error {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(
        Audience::Staff,
        status,
        render::enrol(
            frame(l, &p.csrf()),
            &EnrolView {
                qr_svg: qr,
                secret: e.base32,
                recovery_codes: codes,
            },
        ),
    )
}

async fn enrol_page(State(s): State<AppState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let l = locale(&parts, None, None);
    match session::pending(&s, &parts, SessionStage::Enrol).await {
        Some(p) => enrol_view(&s, l, &p, false),
        None => see_other("/sign-in"),
    }
}

async fn enrol(State(s): State<AppState>, req: Request) -> Response {
    let (parts, f) = read_form(req).await;
    let l = locale(&parts, Some(&f), None);
    let Some(p) = session::pending(&s, &parts, SessionStage::Enrol).await else {
        return see_other("/sign-in");
    };
    if !p.csrf_ok(f.get("csrf").unwrap_or_default()) {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let Some((secret, codes)) = enrolment(&p) else {
        return see_other("/sign-in");
    };
    let now = (ms(s.rt.now()) / 1000) as u64;
    let Some(step) = auth::verify_totp(&secret, &f.text("code"), now, None) else {
        failed(&s, &p.row.user, "enrol").await;
        return enrol_view(&s, l, &p, true);
    };
    let mut raw = [0u8; 20];
    raw.copy_from_slice(&secret[..20.min(secret.len())]);
    let base32 = auth::enrol("clearflow", &p.row.user, raw).base32;
    let hashes: Vec<String> = codes.iter().map(|c| auth::hash_recovery_code(c)).collect();
    if let Err(e) =
        s.rt.enrol_totp(&p.row.user, &base32, step as i64, &hashes)
            .await
    {
        tracing::error!(error = %e, "storing a TOTP enrolment");
        return error_page(Audience::Staff, StatusCode::INTERNAL_SERVER_ERROR, l);
    }
    audit(&s, "auth.totp_enrolled", &p.row.user, json!({})).await;
    activate(&s, &p, "totp_enrolment").await
}

async fn sign_out(State(s): State<AppState>, staff: Staff, body: Bytes) -> Response {
    let f = Form::new(body);
    if !staff.session.csrf_ok(f.get("csrf").unwrap_or_default()) {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, staff.locale);
    }
    let _ = s.rt.revoke_session(&staff.session.row.id_hash).await;
    audit(&s, "auth.sign_out", &staff.caller.user, json!({})).await;
    let mut resp = see_other("/sign-in");
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie(&s));
    resp
}

// ---- inbox ---------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct InboxQuery {
    #[serde(default)]
    case: String,
    #[serde(default)]
    workflow: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    overdue: Option<String>,
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    lang: Option<String>,
}

async fn inbox(State(s): State<AppState>, staff: Staff, Query(q): Query<InboxQuery>) -> Response {
    let l = staff.locale;
    let c = &staff.caller;
    if !c.can(&Permission::ActOnTasks) && !c.can(&Permission::ReadInstances) {
        let _ = c.require(&Permission::ActOnTasks);
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let _ = q.lang;
    let page_no = q.page.unwrap_or(1).clamp(1, 10_000);
    let overdue = q
        .overdue
        .as_deref()
        .is_some_and(|v| v == "true" || v == "on");
    let now = ms(s.rt.now());
    let per_page = render::INBOX_PAGE;
    let nonempty = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    // The inbox is what the caller could act on: their own and their roles' tasks,
    // whatever `read_instances` would let them see besides.
    let filter = TaskFilter {
        visible_to: Some((c.user.clone(), c.roles.clone())),
        role: nonempty(&q.role),
        status: Some("open".into()),
        workflow: nonempty(&q.workflow),
        case_number: nonempty(&q.case),
        due_before: overdue.then_some(now),
        limit: (per_page as u32) * page_no + 1,
        order_by_due: true,
        ..Default::default()
    };
    let rows = match s.rt.list_tasks(&filter).await {
        Ok(r) => r,
        Err(e) => return internal(l, e),
    };
    let skip = per_page * (page_no as usize - 1);
    let has_next = rows.len() > skip + per_page;
    let catalog = s.rt.catalog();
    let shown: Vec<&TaskRow> = rows.iter().skip(skip).take(per_page).collect();
    let ids: Vec<String> = shown
        .iter()
        .map(|t| t.instance_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let numbers = match s.rt.case_numbers(&ids).await {
        Ok(n) => n,
        Err(e) => return internal(l, e),
    };
    let mut out = Vec::new();
    for t in shown {
        let wf = catalog.get(&t.workflow).cloned();
        let due_in = t
            .due_at
            .zip(wf.as_ref())
            .map(|(d, wf)| s.rt.working_days_until(wf, d));
        let number = numbers.get(&t.instance_id).cloned().unwrap_or_default();
        out.push(InboxRow {
            task: t.task_no,
            id: t.id.clone(),
            title: t.title.clone().unwrap_or_else(|| t.step.clone()),
            case: number,
            workflow: wf
                .as_ref()
                .and_then(|w| w.title.clone())
                .unwrap_or_else(|| t.workflow.clone()),
            role: t.role.clone().unwrap_or_default(),
            due_in,
        });
    }
    let view = InboxView {
        rows: out,
        filter: InboxFilter {
            case: q.case,
            workflow: q.workflow,
            role: q.role,
            overdue,
        },
        page: page_no,
        has_next,
    };
    page(
        Audience::Staff,
        StatusCode::OK,
        render::inbox(frame(l, &staff.csrf()), &view),
    )
}

// ---- task ----------------------------------------------------------------------------

/// What may be shown of a task to this caller: the API's own rule.
fn visible(staff: &Staff, t: &TaskRow) -> bool {
    crate::tasks::visible(&staff.caller, t)
}

fn may_act(staff: &Staff, t: &TaskRow) -> bool {
    let c = &staff.caller;
    c.can(&Permission::ActOnTasks)
        && t.status == "open"
        && (t.assignee.as_deref() == Some(c.user.as_str())
            || t.role.as_deref().is_some_and(|r| c.has_role(r)))
}

async fn task_page(State(s): State<AppState>, staff: Staff, Path(id): Path<String>) -> Response {
    show_task(&s, &staff, &id, None, None, None).await
}

async fn case_task(
    State(s): State<AppState>,
    staff: Staff,
    Path((id, n)): Path<(String, i64)>,
) -> Response {
    let found =
        s.rt.list_tasks(&TaskFilter {
            instance: Some(id),
            limit: 1000,
            ..Default::default()
        })
        .await;
    match found.map(|rows| rows.into_iter().find(|t| t.task_no == n)) {
        Ok(Some(t)) => see_other(&format!("/tasks/{}", t.id)),
        Ok(None) => error_page(Audience::Staff, StatusCode::NOT_FOUND, staff.locale),
        Err(e) => internal(staff.locale, e),
    }
}

/// The task page, with the form's values and errors after a refused submission.
async fn show_task(
    s: &AppState,
    staff: &Staff,
    id: &str,
    values: Option<&Value>,
    errors: Option<&BTreeMap<String, String>>,
    refusal: Option<(Option<Refusal>, Vec<String>)>,
) -> Response {
    let l = staff.locale;
    let c = &staff.caller;
    if !c.can(&Permission::ActOnTasks) && !c.can(&Permission::ReadInstances) {
        let _ = c.require(&Permission::ActOnTasks);
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let t = match s.rt.task(id).await {
        Ok(Some(t)) if visible(staff, &t) => t,
        Ok(_) => return error_page(Audience::Staff, StatusCode::NOT_FOUND, l),
        Err(e) => return internal(l, e),
    };
    let Ok(Some((row, state))) = s.rt.instance(&t.instance_id).await else {
        return error_page(Audience::Staff, StatusCode::NOT_FOUND, l);
    };
    let wf = match s.rt.version(&row.def_hash).await {
        Ok(wf) => wf,
        Err(e) => return internal(l, e),
    };
    let state: Value = serde_json::from_str(&state).unwrap_or_default();
    let (schema, rejectable) = match wf.node_by_id(&t.step).map(|n| &n.kind) {
        Some(clearflow_core::workflow::NodeKind::Task(step)) => (
            step.form.as_ref().map(|f| f.json.clone()),
            step.on_reject.is_some(),
        ),
        _ => (None, false),
    };
    let schema = schema.unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let empty = BTreeMap::new();
    let fields = form::fields(
        &schema,
        values.unwrap_or(&Value::Null),
        errors.unwrap_or(&empty),
    );
    let mut summary = vec![SummaryItem {
        label: l.t("inbox.case").into(),
        value: state["data"]["input"]["case_number"]
            .as_str()
            .unwrap_or("—")
            .into(),
    }];
    summary.push(SummaryItem {
        label: l.t("inbox.workflow").into(),
        value: wf.title.clone().unwrap_or_else(|| wf.id.clone()),
    });
    if let Some(d) = t.due_at {
        summary.push(SummaryItem {
            label: l.t("inbox.due").into(),
            value: format!(
                "{} ({})",
                when(d, wf.timezone),
                render::due_words(l, Some(s.rt.working_days_until(&wf, d)))
            ),
        });
    }
    if let Some(who) = &t.claimed_by {
        summary.push(SummaryItem {
            label: l.t("task.claimed_by").into(),
            value: who.clone(),
        });
    }
    summary.push(SummaryItem {
        label: l.t("case.title").into(),
        value: format!("/cases/{}", t.instance_id),
    });
    let acting = may_act(staff, &t);
    let (refusal, messages) = refusal.unwrap_or_default();
    let view = TaskView {
        task: t.task_no,
        id: t.id.clone(),
        instance: t.instance_id.clone(),
        title: t.title.clone().unwrap_or_else(|| t.step.clone()),
        summary,
        fields,
        claimable: acting && t.claimed_by.is_none(),
        mine: acting && t.claimed_by.as_deref().is_none_or(|u| u == c.user.as_str()),
        releasable: acting && t.claimed_by.as_deref() == Some(c.user.as_str()),
        rejectable,
        refusal,
        messages,
        closed: (t.status != "open").then(|| t.status.clone()),
    };
    let status = if errors.is_some() || !view.messages.is_empty() || view.refusal.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page(
        Audience::Staff,
        status,
        render::task(frame(l, &staff.csrf()), &view),
    )
}

async fn task_action(
    State(s): State<AppState>,
    staff: Staff,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let l = staff.locale;
    let f = Form::new(body);
    if !staff.session.csrf_ok(f.get("csrf").unwrap_or_default()) {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let c = &staff.caller;
    if c.require(&Permission::ActOnTasks).is_err() {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let t = match s.rt.task(&id).await {
        Ok(Some(t)) if visible(&staff, &t) => t,
        Ok(_) => return error_page(Audience::Staff, StatusCode::NOT_FOUND, l),
        Err(e) => return internal(l, e),
    };
    let taken = |r: TaskRefused| match r {
        TaskRefused::Conflict(_) => Some(Refusal::Taken),
        _ => None,
    };
    let words = |r: &TaskRefused| match r {
        TaskRefused::NotFound => l.t("error.not_found").to_owned(),
        TaskRefused::NotOpen(st) => format!("{} ({st})", l.t("task.closed")),
        TaskRefused::Forbidden(_) => l.t("error.forbidden").to_owned(),
        TaskRefused::Conflict(_) => l.t("task.refused.taken").to_owned(),
    };
    match action.as_str() {
        "claim" | "release" => {
            match s
                .rt
                .claim_task(&id, &c.user, &c.roles, action == "claim")
                .await
            {
                Ok(Ok(_)) => see_other(&format!("/tasks/{id}")),
                Ok(Err(ActRefused::Task(r))) => {
                    let m = words(&r);
                    let refusal = taken(r);
                    show_task(&s, &staff, &id, None, None, Some((refusal, vec![m]))).await
                }
                Ok(Err(ActRefused::Gone)) => error_page(Audience::Staff, StatusCode::NOT_FOUND, l),
                Ok(Err(ActRefused::Check(refusals))) => {
                    let (refusal, messages) = checked(&refusals);
                    show_task(&s, &staff, &id, None, None, Some((refusal, messages))).await
                }
                Err(e) => internal(l, e),
            }
        }
        "complete" | "reject" => {
            let action = if action == "complete" {
                let schema = match s.rt.instance(&t.instance_id).await {
                    Ok(Some((row, _))) => match s.rt.version(&row.def_hash).await {
                        Ok(wf) => match wf.node_by_id(&t.step).map(|n| &n.kind) {
                            Some(clearflow_core::workflow::NodeKind::Task(step)) => {
                                step.form.as_ref().map(|f| f.json.clone())
                            }
                            _ => None,
                        },
                        Err(e) => return internal(l, e),
                    },
                    _ => None,
                }
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
                match form::parse(&schema, f.body(), l) {
                    Ok(v) => TaskAction::Complete { form: v },
                    Err(rejected) => {
                        return show_task(
                            &s,
                            &staff,
                            &id,
                            Some(&rejected.values),
                            Some(&rejected.errors),
                            None,
                        )
                        .await;
                    }
                }
            } else {
                let reason = f.text("reason");
                if reason.is_empty() {
                    let m = l.t("task.reason_missing").to_owned();
                    return show_task(&s, &staff, &id, None, None, Some((None, vec![m]))).await;
                }
                TaskAction::Reject { reason }
            };
            let submitted = match &action {
                TaskAction::Complete { form } => Some(form.clone()),
                TaskAction::Reject { .. } => None,
            };
            match s.rt.act_on_task(&id, &c.user, &c.roles, action).await {
                Ok(Ok(_)) => see_other(&format!("/cases/{}", t.instance_id)),
                Ok(Err(ActRefused::Task(r))) => {
                    let m = words(&r);
                    let refusal = taken(r);
                    show_task(
                        &s,
                        &staff,
                        &id,
                        submitted.as_ref(),
                        None,
                        Some((refusal, vec![m])),
                    )
                    .await
                }
                Ok(Err(ActRefused::Gone)) => error_page(Audience::Staff, StatusCode::NOT_FOUND, l),
                Ok(Err(ActRefused::Check(refusals))) => {
                    let (refusal, messages) = checked(&refusals);
                    show_task(
                        &s,
                        &staff,
                        &id,
                        submitted.as_ref(),
                        None,
                        Some((refusal, messages)),
                    )
                    .await
                }
                Err(e) => internal(l, e),
            }
        }
        _ => error_page(Audience::Staff, StatusCode::NOT_FOUND, l),
    }
}

/// The engine's refusals as the task page shows them: separation of duties in plain
/// words (the banner), every other reason as its message.
fn checked(refusals: &[clearflow_core::engine::Refusal]) -> (Option<Refusal>, Vec<String>) {
    let refusal = refusals
        .iter()
        .any(|r| r.kind == RefusalKind::SeparationOfDuties)
        .then_some(Refusal::Separation);
    let messages = refusals
        .iter()
        .filter(|r| r.kind != RefusalKind::SeparationOfDuties)
        .map(|r| r.message.clone())
        .collect();
    (refusal, messages)
}

// ---- case ----------------------------------------------------------------------------

/// Every task of one case, open or closed (at most 1000).
async fn case_tasks(
    s: &AppState,
    instance: &str,
) -> Result<Vec<TaskRow>, clearflow_runtime::data::StoreError> {
    s.rt.list_tasks(&TaskFilter {
        instance: Some(instance.to_owned()),
        limit: 1000,
        ..Default::default()
    })
    .await
}

async fn case_page(State(s): State<AppState>, staff: Staff, Path(id): Path<String>) -> Response {
    let l = staff.locale;
    let c = &staff.caller;
    let Ok(Some((row, state))) = s.rt.instance(&id).await else {
        return error_page(Audience::Staff, StatusCode::NOT_FOUND, l);
    };
    // `read_instances`, or a task of this case the caller may see (their role's or theirs).
    let tasks = match case_tasks(&s, &id).await {
        Ok(t) => t,
        Err(e) => return internal(l, e),
    };
    let involved = tasks.iter().any(|t| visible(&staff, t));
    if !c.can(&Permission::ReadInstances) && !involved {
        let _ = c.require(&Permission::ReadInstances);
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let wf = match s.rt.version(&row.def_hash).await {
        Ok(wf) => wf,
        Err(e) => return internal(l, e),
    };
    let tz = wf.timezone;
    let inst: Option<Instance> = serde_json::from_str(&state).ok();
    let state: Value = serde_json::from_str(&state).unwrap_or_default();
    let waiting: BTreeSet<String> = inst
        .as_ref()
        .map(|i| {
            i.tokens
                .values()
                .map(|t| wf.node(t.node).id.clone())
                .collect()
        })
        .unwrap_or_default();
    let timers = inst
        .as_ref()
        .map(|i| {
            i.tokens
                .values()
                .filter_map(|t| match &t.wait {
                    Wait::Timer { at, .. } => Some(CaseTimer {
                        what: wf.node(t.node).id.clone(),
                        at: when(ms(*at), tz),
                    }),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let history = match s.rt.history(&id).await {
        Ok(h) => h,
        Err(e) => return internal(l, e),
    };
    let timeline = history
        .iter()
        .filter(|h| !h.kind.starts_with("step_skipped"))
        .map(|h| TimelineRow {
            at: when(h.at, tz),
            who: h.actor.clone(),
            what: match &h.step {
                Some(step) => format!("{} · {step}", render::history_words(l, &h.kind)),
                None => render::history_words(l, &h.kind),
            },
        })
        .collect();
    let open_tasks = tasks
        .iter()
        .filter(|t| t.status == "open")
        .map(|t| CaseTask {
            task: t.task_no,
            id: t.id.clone(),
            title: t.title.clone().unwrap_or_else(|| t.step.clone()),
            waiting_for: t
                .claimed_by
                .clone()
                .or_else(|| t.assignee.clone())
                .or_else(|| t.role.clone())
                .unwrap_or_default(),
        })
        .collect();
    let mut links = Vec::new();
    if let Some(parent) = &row.parent_id {
        links.push(CaseLink {
            instance: parent.clone(),
            alias: row.parent_link.clone().unwrap_or_else(|| "parent".into()),
            number: s.rt.case_number(parent).await.unwrap_or_default(),
        });
    }
    if let Ok(children) =
        s.rt.list_instances(&ListFilter {
            parent: Some(id.clone()),
            limit: 100,
            ..ListFilter::default()
        })
        .await
    {
        let ids: Vec<String> = children.iter().map(|c| c.id.clone()).collect();
        let numbers = s.rt.case_numbers(&ids).await.unwrap_or_default();
        for ch in children {
            links.push(CaseLink {
                number: numbers.get(&ch.id).cloned().unwrap_or_default(),
                alias: ch.workflow.clone(),
                instance: ch.id,
            });
        }
    }
    let mails =
        s.rt.mail_for_instance(&id)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| CaseMail {
                at: when(m.sent_at.unwrap_or(m.created_at), tz),
                template: m.subject,
                state: match m.status.as_str() {
                    "sent" => "sent",
                    "dead" | "failed" => "failed",
                    _ => "queued",
                }
                .into(),
            })
            .collect();
    // Messages with the whistleblower: to whoever may act on the case's tasks or read
    // instances; each read is recorded before it is shown.
    let messages = if s.rt.identity_key().is_some() && s.rt.has_receipt(&id).await {
        match s.rt.messages(&id, Some(&c.user)).await {
            Ok(m) => Some(
                m.into_iter()
                    .map(|m| MessageView {
                        from_reporter: m.author.is_none(),
                        at: when(m.at, tz),
                        text: m.text,
                    })
                    .collect(),
            ),
            Err(e) => return internal(l, e),
        }
    } else {
        None
    };
    let identity = if c.can(&Permission::ReadIdentity) {
        identity_panel(&s, &id).await
    } else {
        None
    };
    let view = CaseView {
        instance: id.clone(),
        number: state["data"]["input"]["case_number"]
            .as_str()
            .unwrap_or("—")
            .into(),
        workflow_title: wf.title.clone().unwrap_or_else(|| wf.id.clone()),
        status: render::status_words(l, &row.status),
        diagram_svg: clearflow_web::diagram::svg(&wf, &waiting),
        timeline,
        tasks: open_tasks,
        timers,
        links,
        mails,
        messages,
        identity,
    };
    page(
        Audience::Staff,
        StatusCode::OK,
        render::case(frame(l, &staff.csrf()), &view),
    )
}

async fn case_message(
    State(s): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let l = staff.locale;
    let f = Form::new(body);
    if !staff.session.csrf_ok(f.get("csrf").unwrap_or_default()) {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let c = &staff.caller;
    let involved =
        s.rt.list_tasks(&TaskFilter {
            instance: Some(id.clone()),
            status: None,
            limit: 1000,
            ..Default::default()
        })
        .await
        .map(|t| t.iter().any(|t| visible(&staff, t)))
        .unwrap_or(false);
    if !involved || !c.can(&Permission::ActOnTasks) {
        let _ = c.require(&Permission::ActOnTasks);
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let text: String = f.text("message").chars().take(10_000).collect();
    if !text.is_empty()
        && let Err(e) = s.rt.add_message(&id, Some(&c.user), &text).await
    {
        return internal(l, e);
    }
    see_other(&format!("/cases/{id}"))
}

/// The identity panel of a real-name case, for a caller with `read_identity`: what the
/// workflow's `identity_read:` rule says now. Nothing is read or recorded.
async fn identity_panel(s: &AppState, instance: &str) -> Option<IdentityPanel> {
    use clearflow_core::engine::IdentityReadRefused as R;
    let (rule, step, by) = match s.rt.identity_rule(instance).await {
        Ok(Ok(None)) => ("open", None, None),
        Ok(Ok(Some(a))) => ("approved", Some(a.step), Some(a.by)),
        Ok(Err(R::NotApproved { step, .. })) => ("pending", Some(step), None),
        Ok(Err(R::Never { .. })) => ("never", None, None),
        Err(IdentityReadError::NoKey | IdentityReadError::Anonymous(_)) => return None,
        Err(e) => {
            tracing::warn!(instance, error = %e, "identity rule not known for the case page");
            return None;
        }
    };
    Some(IdentityPanel { rule, step, by })
}

/// Reads the reporter's identity through a case (`read_identity`, with a reason, as the
/// workflow allows): [`clearflow_runtime::Runtime::read_identity`] records the read
/// before it opens the seal; a refusal is shown in plain words.
async fn case_identity(
    State(s): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let l = staff.locale;
    let f = Form::new(body);
    if !staff.session.csrf_ok(f.get("csrf").unwrap_or_default()) {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let c = &staff.caller;
    if c.require(&Permission::ReadIdentity).is_err() {
        return error_page(Audience::Staff, StatusCode::FORBIDDEN, l);
    }
    let reason = f.text("reason");
    let csrf = staff.csrf();
    let frame = frame(l, &csrf);
    let say = |status, key| {
        page(
            Audience::Staff,
            status,
            render::message(frame, true, l.t(key)),
        )
    };
    match s.rt.read_identity(&id, &c.user, &reason).await {
        Ok(opened) => {
            let i = opened.identity;
            let fields = [
                ("name", i.name),
                ("email", i.email),
                ("phone", i.phone),
                ("id_number", i.id_number),
                ("address", i.address),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let view = IdentityView {
                number: s.rt.case_number(&id).await.unwrap_or_default(),
                instance: id,
                fields,
                reason: reason.trim().to_owned(),
                approval: opened.approval.map(|a| (a.step, a.by)),
            };
            page(
                Audience::Staff,
                StatusCode::OK,
                render::identity(frame, &view),
            )
        }
        Err(IdentityReadError::NoReason) => say(StatusCode::BAD_REQUEST, "identity.no_reason"),
        Err(IdentityReadError::ReasonTooLong) => say(StatusCode::BAD_REQUEST, "identity.too_long"),
        Err(IdentityReadError::NoKey) => say(StatusCode::SERVICE_UNAVAILABLE, "error.unavailable"),
        Err(IdentityReadError::NoInstance(_)) => {
            error_page(Audience::Staff, StatusCode::NOT_FOUND, l)
        }
        Err(IdentityReadError::Anonymous(_)) => say(StatusCode::NOT_FOUND, "identity.anonymous"),
        Err(IdentityReadError::Refused(clearflow_core::engine::IdentityReadRefused::Never {
            ..
        })) => say(StatusCode::FORBIDDEN, "identity.refused_never"),
        Err(IdentityReadError::Refused(_)) => {
            say(StatusCode::FORBIDDEN, "identity.refused_pending")
        }
        Err(e @ (IdentityReadError::Store(_) | IdentityReadError::Internal(_))) => internal(l, e),
    }
}
