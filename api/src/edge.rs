//! Checks at the edge, before any handler reads a body: a request with a body must say
//! it is JSON (`415` otherwise, so a cross-site `text/plain` form post never reaches a
//! JSON parser; the one YAML endpoint, `POST /v1/workflows/validate`, takes YAML or
//! plain text), and a browser's post to the public endpoints must come from this site
//! or an allowed origin (`403` otherwise).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AppState, Problem};

/// Whether `value` (a `Content-Type`) names JSON: `application/json` or `application/*+json`,
/// with or without parameters.
pub(crate) fn is_json(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The endpoint whose body is a workflow file.
const YAML_ENDPOINT: &str = "/v1/workflows/validate";

/// Whether `value` (a `Content-Type`, possibly absent) fits a workflow file (YAML, or
/// JSON, which is YAML too). It takes a bearer token, so a page on another site cannot
/// post to it.
fn is_yaml_or_text(value: &str) -> bool {
    if is_json(value) {
        return true;
    }
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "" | "text/plain" | "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml"
    )
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// Why a browser's request to a public endpoint is refused as cross-site, if it is.
pub(crate) fn cross_site(headers: &HeaderMap, allowed: &[String]) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if text("sec-fetch-site") == Some("cross-site") {
        return Some("the browser says this request comes from another site".into());
    }
    let origin = text("origin")?;
    if origin == "null" {
        return Some("the request comes from an opaque origin".into());
    }
    let authority = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    let own = text("host").is_some_and(|h| h.eq_ignore_ascii_case(authority));
    let listed = allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin));
    (!own && !listed).then(|| {
        format!(
            "origin `{origin}` is not this site nor an allowed origin ([intake] allowed_origins)"
        )
    })
}

/// The edge middleware.
pub async fn check(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let writes = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if writes && has_body(req.headers()) {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let accepted = if req.uri().path() == YAML_ENDPOINT {
            is_yaml_or_text(ct)
        } else {
            is_json(ct)
        };
        if !accepted {
            return Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                format!(
                    "the request body must be JSON (Content-Type: application/json), not `{}`",
                    if ct.is_empty() { "none" } else { ct }
                ),
            )
            .into_response();
        }
    }
    if writes
        && req.uri().path().starts_with("/v1/public/")
        && let Some(why) = cross_site(req.headers(), s.intake.allowed_origins())
    {
        return Problem::new(StatusCode::FORBIDDEN, "cross-site request", why).into_response();
    }
    if writes && has_body(req.headers()) {
        let json = req.uri().path() != YAML_ENDPOINT;
        // The body must arrive within the body timeout; JSON deeper or larger than the
        // limits is refused before any parser sees it, so nothing is stored that could
        // not be read back.
        let (parts, body) = req.into_parts();
        let limits = s.rt.limits();
        let cap = usize::try_from(limits.json_bytes)
            .unwrap_or(usize::MAX)
            .max(s.body_limit)
            .saturating_add(1);
        let read = tokio::time::timeout(s.body_timeout, axum::body::to_bytes(body, cap));
        let bytes = match read.await {
            Err(_) => {
                return Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        s.body_timeout.as_secs()
                    ),
                )
                .into_response();
            }
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload too large",
                    "the request body is larger than this endpoint accepts",
                )
                .into_response();
            }
        };
        if json && let Err(e) = clearflow_core::check_json_bytes(&bytes, limits) {
            let status = match e.limit {
                clearflow_core::Limit::JsonBytes => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            return Problem::new(status, "limit exceeded", e.to_string()).into_response();
        }
        return next
            .run(Request::from_parts(parts, axum::body::Body::from(bytes)))
            .await;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_media_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
    }

    #[test]
    fn the_workflow_endpoint_takes_yaml_text_or_json() {
        for ok in [
            "",
            "text/plain",
            "application/yaml",
            "text/yaml; charset=utf-8",
            "application/json",
        ] {
            assert!(is_yaml_or_text(ok), "{ok}");
        }
        for bad in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert!(!is_yaml_or_text(bad), "{bad}");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let allowed = vec!["https://report.example.org".to_owned()];
        assert_eq!(
            cross_site(&headers(&[("host", "127.0.0.1:8080")]), &allowed),
            None,
            "no browser headers: a client, not a page"
        );
        assert_eq!(
            cross_site(
                &headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:8080")
                ]),
                &allowed
            ),
            None
        );
        assert_eq!(
            cross_site(
                &headers(&[
                    ("host", "internal:8080"),
                    ("origin", "https://report.example.org")
                ]),
                &allowed
            ),
            None
        );
        assert!(
            cross_site(
                &headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "https://evil.example")
                ]),
                &allowed
            )
            .is_some()
        );
        assert!(
            cross_site(
                &headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
                &allowed
            )
            .is_some()
        );
        assert!(
            cross_site(
                &headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
                &allowed
            )
            .is_some()
        );
    }
}
