//! The web console: the whistleblower's pages ([`public`]) and the staff pages
//! ([`staff`], [`admin`]), server-rendered by `clearflow-web` from data the runtime gives.
//!
//! The console is a second client of the runtime beside the JSON API and shares its
//! rules: a signed-in user becomes the same [`Caller`] a token would (built by
//! [`Caller::of_user`]), and every page checks the same [`Permission`]s the matching API
//! endpoint checks. Every response carries the security headers of `clearflow-web`
//! (`script-src 'none'` on the whistleblower's pages) and `Cache-Control: no-store`.

mod admin;
mod public;
mod session;
mod staff;

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use clearflow_web::{Locale, WebError};

use crate::AppState;
pub(crate) use session::Staff;

/// Longest form body the console accepts.
const FORM_LIMIT: usize = 256 * 1024;

/// The whistleblower's pages and the stylesheet: served on the main listener, or alone
/// on `[web] public_listen`.
pub fn public_router(state: AppState) -> Router {
    public::routes()
        .route("/static/style.css", get(stylesheet))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

/// The staff console (sign-in, inbox, tasks, cases, administration) and the stylesheet.
pub fn staff_router(state: AppState) -> Router {
    staff::routes()
        .merge(admin::routes())
        .route("/static/style.css", get(stylesheet))
        .route("/", get(|| async { Redirect::to("/inbox") }))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

/// The whistleblower's pages without the stylesheet route (for merging beside
/// [`staff_router`] on one listener).
pub fn public_pages(state: AppState) -> Router {
    public::routes()
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        clearflow_web::render::STYLESHEET,
    )
        .into_response()
}

/// Which security headers a page gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Public,
    Staff,
}

/// An HTML page with its security headers; a render failure is a logged 500.
fn page(audience: Audience, status: StatusCode, html: Result<String, WebError>) -> Response {
    let (status, body) = match html {
        Ok(b) => (status, b),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>500</title><p>internal error</p>".to_owned(),
            )
        }
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let headers = match audience {
        Audience::Public => clearflow_web::auth::public_headers(),
        Audience::Staff => clearflow_web::auth::staff_headers(),
    };
    for (k, v) in headers {
        h.insert(k, HeaderValue::from_static(v));
    }
    resp
}

/// A plain error page (403, 404, 429, 500) in the user's language.
fn error_page(audience: Audience, status: StatusCode, locale: Locale) -> Response {
    let key = match status.as_u16() {
        403 => "error.forbidden",
        404 => "error.not_found",
        429 => "error.too_many",
        503 => "error.unavailable",
        _ => "error.internal",
    };
    let html = clearflow_web::render::message(
        clearflow_web::Frame { locale, csrf: "" },
        audience == Audience::Staff,
        locale.t(key),
    );
    page(audience, status, html)
}

/// A logged 500 page for staff.
fn staff_internal(l: Locale, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console page failed");
    error_page(Audience::Staff, StatusCode::INTERNAL_SERVER_ERROR, l)
}

/// A `303 See Other` to `to` (after a form post).
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The locale: an explicit choice (`lang` in the query or the form), then the user's
/// own, then `Accept-Language`.
fn locale(parts: &Parts, form: Option<&Form>, user: Option<&str>) -> Locale {
    let chosen = query(parts)
        .get("lang")
        .cloned()
        .or_else(|| form.and_then(|f| f.get("lang").map(str::to_owned)));
    if let Some(l) = chosen.as_deref().and_then(Locale::from_tag) {
        return l;
    }
    let accept = parts
        .headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    Locale::negotiate(user, accept)
}

fn query(parts: &Parts) -> BTreeMap<String, String> {
    parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// A submitted urlencoded form (last value of each name wins; see [`Form::body`] for the
/// raw bytes a schema parse needs).
struct Form {
    fields: BTreeMap<String, String>,
    body: axum::body::Bytes,
}

impl Form {
    fn new(body: axum::body::Bytes) -> Form {
        Form {
            fields: form_urlencoded::parse(&body).into_owned().collect(),
            body,
        }
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(String::as_str)
    }
    fn text(&self, k: &str) -> String {
        self.get(k).unwrap_or_default().trim().to_owned()
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Whether a form post comes from a page of this site, by the Fetch Metadata the
/// browser sends (`Sec-Fetch-Site`), else by `Origin` against `Host`. Forms that run
/// before a session exists (the whistleblower's, sign-in) rely on this instead of a
/// token, so they need no cookie.
fn same_site(headers: &HeaderMap, allowed: &[String]) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser, or one from before Origin on form posts
    };
    if origin == "null" {
        return false;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let bare = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or(origin);
    bare == host || allowed.iter().any(|a| a == origin)
}

/// Milliseconds as `YYYY-MM-DD HH:MM` in `tz`.
fn when(ms: i64, tz: chrono_tz::Tz) -> String {
    clearflow_runtime::clock::from_ms(ms)
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn form_posts_from_other_sites_are_told_apart() {
        let none: &[String] = &[];
        assert!(same_site(
            &headers(&[("sec-fetch-site", "same-origin")]),
            none
        ));
        assert!(!same_site(
            &headers(&[("sec-fetch-site", "cross-site")]),
            none
        ));
        assert!(!same_site(
            &headers(&[("sec-fetch-site", "same-site")]),
            none
        ));
        assert!(same_site(
            &headers(&[
                ("origin", "http://a.example:8080"),
                ("host", "a.example:8080")
            ]),
            none
        ));
        assert!(!same_site(
            &headers(&[("origin", "https://evil.example"), ("host", "a.example")]),
            none
        ));
        assert!(!same_site(
            &headers(&[("origin", "null"), ("host", "a")]),
            none
        ));
        assert!(same_site(
            &headers(&[("origin", "https://proxy.example"), ("host", "10.0.0.1")]),
            &["https://proxy.example".to_owned()]
        ));
        assert!(same_site(&headers(&[]), none));
    }
}
