//! The whistleblower's pages: file a complaint, see the receipt code once, follow the
//! case and exchange messages with the office, all without script or cookie.
//!
//! The receipt code travels only in POST bodies (never a URL, so never an access log)
//! and is never logged. The form is generated from the intake workflow's input schema
//! ([`Runtime::intake_form`](clearflow_runtime::Runtime::intake_form)) by the same
//! generator as the staff forms. Rate limits are those of the JSON intake API.

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use clearflow_runtime::intake::{Complaint, IntakeError, Reporter};
use clearflow_web::form::{self, complaint_schema};
use clearflow_web::render::{
    self, FileComplaintView, FollowView, MessageView, ReceiptView, StatusView,
};
use clearflow_web::{Frame, Locale};
use serde_json::{Map, Value};

use super::{Audience, Form, error_page, locale, page, same_site};
use crate::AppState;
use crate::intake::ClientAddr;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/report", get(show_form).post(file))
        .route("/follow", get(show_follow).post(follow))
        .route("/follow/message", post(message))
        .route("/public", get(|| async { Redirect::to("/report") }))
}

/// The parts of a request the pages need, and its body as a form.
struct Req {
    locale: Locale,
    addr: Option<std::net::IpAddr>,
    same_site: bool,
    form: Form,
}

async fn read(s: &AppState, req: Request) -> Req {
    let (mut parts, body) = req.into_parts();
    let addr = ClientAddr::from_request_parts(&mut parts, s)
        .await
        .map(|a| a.0)
        .unwrap_or(None);
    let bytes = axum::body::to_bytes(body, super::FORM_LIMIT)
        .await
        .unwrap_or_default();
    let form = Form::new(bytes);
    Req {
        locale: locale(&parts, Some(&form), None),
        addr,
        same_site: same_site(&parts.headers, s.intake.allowed_origins()),
        form,
    }
}

fn frame(locale: Locale) -> Frame<'static> {
    Frame { locale, csrf: "" }
}

fn schema(s: &AppState, locale: Locale) -> Option<Value> {
    s.rt.intake_form().map(|f| complaint_schema(&f, locale))
}

async fn show_form(State(s): State<AppState>, req: Request) -> Response {
    let r = read(&s, req).await;
    let Some(schema) = schema(&s, r.locale) else {
        return error_page(Audience::Public, StatusCode::NOT_FOUND, r.locale);
    };
    let view = FileComplaintView {
        fields: form::fields(
            &schema,
            &serde_json::json!({"kind": "anonymous"}),
            &Default::default(),
        ),
        has_errors: false,
        error: None,
    };
    page(
        Audience::Public,
        StatusCode::OK,
        render::file_complaint(frame(r.locale), &view),
    )
}

async fn file(State(s): State<AppState>, req: Request) -> Response {
    let r = read(&s, req).await;
    let l = r.locale;
    if !r.same_site {
        return error_page(Audience::Public, StatusCode::FORBIDDEN, l);
    }
    let Some(schema) = schema(&s, l) else {
        return error_page(Audience::Public, StatusCode::NOT_FOUND, l);
    };
    let refuse = |values: &Value, errors, error: Option<String>| {
        page(
            Audience::Public,
            StatusCode::UNPROCESSABLE_ENTITY,
            render::file_complaint(
                frame(l),
                &FileComplaintView {
                    fields: form::fields(&schema, values, errors),
                    has_errors: true,
                    error,
                },
            ),
        )
    };
    if let Some(wait) = s.intake.intake_wait(r.addr) {
        tracing::info!(wait_s = wait.as_secs(), "web intake refused: rate limit");
        let values = form::parse(&schema, r.form.body(), l).unwrap_or_else(|e| e.values);
        return refuse(
            &values,
            &Default::default(),
            Some(l.t("wb2.rate_limited").into()),
        );
    }
    let mut values = match form::parse(&schema, r.form.body(), l) {
        Ok(v) => v,
        Err(rejected) => return refuse(&rejected.values, &rejected.errors, None),
    };
    let Some(obj) = values.as_object_mut() else {
        return error_page(Audience::Public, StatusCode::BAD_REQUEST, l);
    };
    let kind = obj.remove("kind");
    let who = obj.remove("reporter");
    let real_name = kind.as_ref().and_then(Value::as_str) == Some("real_name");
    let reporter = real_name.then(|| reporter_of(who.as_ref()));
    let case: Map<String, Value> = std::mem::take(obj);
    let shown = {
        let mut v = case.clone();
        v.insert("kind".into(), kind.unwrap_or(Value::Null));
        v.insert("reporter".into(), who.unwrap_or(Value::Null));
        Value::Object(v)
    };
    match s.rt.file_complaint(Complaint { case, reporter }).await {
        Ok(receipt) => page(
            Audience::Public,
            StatusCode::CREATED,
            render::receipt(frame(l), &ReceiptView { receipt }),
        ),
        Err(IntakeError::Invalid(m)) => refuse(&shown, &Default::default(), Some(m)),
        Err(e @ (IntakeError::TooLong(_) | IntakeError::BadEmail)) => {
            let field = match e {
                IntakeError::TooLong(f) => format!("reporter.{f}"),
                _ => "reporter.email".into(),
            };
            let mut errors = std::collections::BTreeMap::new();
            errors.insert(field, e.to_string());
            refuse(&shown, &errors, None)
        }
        Err(IntakeError::Disabled) => error_page(Audience::Public, StatusCode::NOT_FOUND, l),
        Err(e) => {
            tracing::error!(error = %e, "web intake failed");
            refuse(
                &shown,
                &Default::default(),
                Some(l.t("wb2.unavailable").into()),
            )
        }
    }
}

fn reporter_of(v: Option<&Value>) -> Reporter {
    let get = |k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Reporter {
        name: get("name"),
        email: get("email"),
        phone: get("phone"),
        id_number: get("id_number"),
        address: get("address"),
        contact_by_email: v
            .and_then(|v| v.get("contact_by_email"))
            .and_then(Value::as_bool),
    }
}

async fn show_follow(State(s): State<AppState>, req: Request) -> Response {
    let r = read(&s, req).await;
    page(
        Audience::Public,
        StatusCode::OK,
        render::follow(frame(r.locale), &FollowView::default()),
    )
}

async fn follow(State(s): State<AppState>, req: Request) -> Response {
    let r = read(&s, req).await;
    let receipt = r.form.text("receipt");
    status_page(&s, &r, &receipt, None).await
}

async fn message(State(s): State<AppState>, req: Request) -> Response {
    let r = read(&s, req).await;
    let receipt = r.form.text("receipt");
    let text = r.form.text("message");
    status_page(&s, &r, &receipt, Some(text)).await
}

/// The status page for `receipt`, after adding `message` when given. A wrong code, an
/// unknown case and a refused rate limit all answer with the receipt form again.
async fn status_page(s: &AppState, r: &Req, receipt: &str, message: Option<String>) -> Response {
    let l = r.locale;
    let again = |status, error: &str| {
        page(
            Audience::Public,
            status,
            render::follow(
                frame(l),
                &FollowView {
                    error: Some(error.to_owned()),
                },
            ),
        )
    };
    if !r.same_site {
        return error_page(Audience::Public, StatusCode::FORBIDDEN, l);
    }
    if let Some(wait) = s.intake.status_wait(r.addr, receipt) {
        tracing::info!(
            wait_s = wait.as_secs(),
            "web status check refused: rate limit"
        );
        return again(StatusCode::TOO_MANY_REQUESTS, l.t("wb2.rate_limited"));
    }
    let status = match s.rt.case_status(receipt).await {
        Ok(Some(c)) => c,
        Ok(None) => return again(StatusCode::NOT_FOUND, l.t("wb2.not_found")),
        Err(e) => {
            tracing::error!(error = %e, "status check failed");
            return error_page(Audience::Public, StatusCode::INTERNAL_SERVER_ERROR, l);
        }
    };
    if let Some(text) = message.filter(|t| !t.is_empty()) {
        let text: String = text.chars().take(10_000).collect();
        if let Err(e) = s.rt.add_message(&status.instance, None, &text).await {
            tracing::error!(error = %e, "storing a reporter's message");
            return error_page(Audience::Public, StatusCode::INTERNAL_SERVER_ERROR, l);
        }
        s.rt.notify_new_message(&status.instance).await;
    }
    let messages = match s.rt.messages(&status.instance, None).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "opening a case's messages");
            Vec::new()
        }
    };
    let tz = status.timezone;
    let view = StatusView {
        receipt: receipt.to_owned(),
        stage: status.status,
        deadlines: status
            .deadline
            .map(|d| vec![super::when(d, tz)[..10].to_owned()])
            .unwrap_or_default(),
        feedback: status.feedback,
        messages: messages
            .into_iter()
            .map(|m| MessageView {
                from_reporter: m.author.is_none(),
                at: super::when(m.at, tz),
                text: m.text,
            })
            .collect(),
    };
    page(
        Audience::Public,
        StatusCode::OK,
        render::status(frame(l), &view),
    )
}
