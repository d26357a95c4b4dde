//! The OpenAPI document of the HTTP API, generated from the code.
//!
//! The router and the document come from one list ([`super::routes`], utoipa-axum's
//! `OpenApiRouter`): a route is registered together with its `#[utoipa::path]`
//! operation, so the daemon cannot serve a route the document lacks, nor document one
//! it does not serve. The security requirement of each operation is not written by
//! hand either: it is derived from the middleware's own rule ([`caller::is_public`]),
//! so the document says exactly which paths need a bearer token.
//!
//! The committed copy is `docs/openapi.json` (`clearflow openapi` prints it; a test
//! fails when it is stale), and `GET /v1/openapi.json` serves it to any authenticated
//! caller.

use std::sync::OnceLock;

use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use super::caller;
pub use super::model::ProblemBody;

/// The name of the bearer-token security scheme in the document.
const BEARER: &str = "bearer";
/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The parts of the document that are not operations: info, tags, shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "clearflow",
        description = "The HTTP API of the clearflow workflow-automation daemon. Errors are \
                       RFC 9457 problem details (`application/problem+json`). Every path needs \
                       a bearer token (`Authorization: Bearer cf_…`, made with `clearflow tokens \
                       create`) except `/healthz`, `/readyz` and `/v1/public/…`; what a token \
                       may do depends on the roles of its user."
    ),
    components(schemas(ProblemBody)),
    tags(
        (name = "health", description = "Liveness, readiness and Prometheus metrics"),
        (name = "workflows", description = "Deployed workflow definitions"),
        (name = "instances", description = "Starting, reading, signalling and cancelling instances"),
        (name = "tasks", description = "Human tasks of the caller's roles"),
        (name = "mail", description = "The mail outbox"),
        (name = "schedules", description = "Cron schedules"),
        (name = "admin", description = "The daemon's clock and the security audit log"),
        (name = "intake", description = "Public complaint intake, status by receipt code, and the audited identity read"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The whole document: every route of the router with its operation, the bearer
/// scheme, and each operation's security requirement from [`caller::is_public`].
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = super::routes(0).split_for_parts();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cf_<id>_<secret>")
                    .description(Some(
                        "An API token made on the host with `clearflow tokens create`.",
                    ))
                    .build(),
            ),
        );
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = caller::is_public(path);
        for op in operations(item) {
            if op.request_body.is_some() {
                op.responses.responses.insert(
                    "413".into(),
                    problem(
                        "the body is larger than the limit (`[server] body_limit`; \
                             `[intake] body_limit` for intake, 4 KiB for status checks)",
                    ),
                );
            }
            if public {
                // An empty list: this operation needs no credentials at all.
                op.security = Some(Vec::new());
            } else {
                op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
                op.responses.responses.insert(
                    "401".into(),
                    problem(
                        "no valid bearer token (missing, malformed, unknown, expired, revoked, \
                         or of a user no longer in the users file)",
                    ),
                );
            }
        }
    }
    doc
}

/// A problem-details response with `description`.
fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

/// Every operation of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The document as committed in `docs/openapi.json`: pretty JSON and a final newline.
pub fn to_json() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("the document serialises");
    text.push('\n');
    text
}

/// [`to_json`], computed once for `GET /v1/openapi.json`.
pub fn cached_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(to_json)
}
