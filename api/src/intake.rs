//! Public intake of complaints, status by receipt code, and the audited identity read.
//!
//! - `POST /v1/public/intake` (no token): starts `[intake] workflow` with the case data
//!   and `reporter: {type, contact_by_email}` only. The identity is sealed into its own
//!   table (see `crate::identity`); the answer carries a receipt code shown this once.
//! - `POST /v1/public/status` (no token; POST so the code stays out of URLs and access
//!   logs): the case's `vars.public_status` and `vars.feedback`, nothing else. A wrong
//!   code and an unknown case get the same answer after the same Argon2 work.
//! - `GET /v1/instances/{id}/identity?reason=…`: the decrypted identity, for callers
//!   with `ReadIdentity`, each read recorded with who and why before it is shown.
//!
//! Request errors here never quote the body: serde's messages can echo a value, and a
//! value here may be someone's name.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::caller::{Caller, Permission};
use super::model::{IdentityApprovalView, IdentityRead, IntakeReply, StatusReply};
use super::openapi::ProblemBody;
use super::{AppState, Problem};
use clearflow_runtime::Runtime;
use clearflow_runtime::config::IntakeConfig;
use clearflow_runtime::identity::IdentityKey;
use clearflow_runtime::intake::{Complaint, IdentityReadError, IntakeError, Reporter};

/// Limiters with more keys than this drop the ones that are full again.
const LIMITER_KEYS: usize = 10_000;

/// Intake settings, the identity key and the in-memory rate limiters.
pub struct Intake {
    cfg: IntakeConfig,
    key: Option<IdentityKey>,
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    status_per_address: DefaultKeyedRateLimiter<IpAddr>,
    per_receipt: DefaultKeyedRateLimiter<String>,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least 1")
}

impl Intake {
    /// The intake service; `key` is required when `cfg.workflow` is set.
    pub fn new(cfg: &IntakeConfig, key: Option<IdentityKey>) -> Intake {
        if cfg.workflow.is_some() {
            clearflow_runtime::identity::Receipt::prepare_dummy();
        }
        Intake {
            per_address: RateLimiter::keyed(
                Quota::with_period(
                    std::time::Duration::from_secs(3600) / cfg.intake_per_hour.max(1),
                )
                .expect("a positive period")
                .allow_burst(nz(cfg.intake_burst)),
            ),
            status_per_address: RateLimiter::keyed(
                Quota::per_minute(nz(cfg.status_per_minute)).allow_burst(nz(cfg.status_burst)),
            ),
            per_receipt: RateLimiter::keyed(
                Quota::with_period(
                    std::time::Duration::from_secs(3600) / cfg.receipt_per_hour.max(1),
                )
                .expect("a positive period")
                .allow_burst(nz(cfg.receipt_burst)),
            ),
            cfg: cfg.clone(),
            key,
        }
    }

    /// The identity key, when one is configured.
    pub fn key(&self) -> Option<&IdentityKey> {
        self.key.as_ref()
    }

    /// Origins besides the daemon's own that may post to the public endpoints.
    pub fn allowed_origins(&self) -> &[String] {
        &self.cfg.allowed_origins
    }

    /// Whether `ip` may file a complaint now; otherwise how long to wait. The web form
    /// and the API share this limit.
    pub(crate) fn intake_wait(&self, ip: Option<IpAddr>) -> Option<std::time::Duration> {
        ip.and_then(|ip| wait(&self.per_address, &ip))
    }

    /// Whether a status check of `receipt` from `ip` may run now; otherwise how long
    /// to wait. The web page and the API share these limits.
    pub(crate) fn status_wait(
        &self,
        ip: Option<IpAddr>,
        receipt: &str,
    ) -> Option<std::time::Duration> {
        ip.and_then(|ip| wait(&self.status_per_address, &ip))
            .or_else(|| wait(&self.per_receipt, &Runtime::receipt_lookup(receipt)))
    }

    /// The body limit of `POST /v1/public/intake` (`[intake] body_limit`).
    pub fn body_limit(&self) -> usize {
        self.cfg.body_limit
    }
}

/// The routes of this file with their OpenAPI operations; `intake_body_limit` is the
/// body limit of the intake endpoint.
pub fn routes(intake_body_limit: usize) -> OpenApiRouter<AppState> {
    let (schemas, paths, method) = routes!(intake);
    let intake = (
        schemas,
        paths,
        method.layer(DefaultBodyLimit::max(intake_body_limit)),
    );
    let (schemas, paths, method) = routes!(status);
    let status = (schemas, paths, method.layer(DefaultBodyLimit::max(4096)));
    OpenApiRouter::new()
        .routes(intake)
        .routes(status)
        .routes(routes!(read_identity))
}

/// The client's address (the TCP peer), when the server records it.
pub(crate) struct ClientAddr(pub(crate) Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<ClientAddr, Problem> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

fn too_many(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests",
        format!("too many requests from this address; try again in {secs} s"),
    )
    .into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&secs.to_string()).expect("digits"),
    );
    r
}

/// `None` when `key` may go now, else how long it must wait.
fn wait<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Option<std::time::Duration> {
    if limiter.len() > LIMITER_KEYS {
        limiter.retain_recent();
    }
    limiter
        .check_key(key)
        .err()
        .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
}

// The refusal is the handler's whole answer, so it is a `Response` (not worth boxing).
#[allow(clippy::result_large_err)]
fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), Response> {
    wait(limiter, key).map_or(Ok(()), |w| Err(too_many(w)))
}

/// A complaint.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IntakeBody {
    /// The case data, as the intake workflow's input schema asks (`reporter` is reserved).
    case: Map<String, Value>,
    /// The reporter's identity, sealed apart from the case; absent for an anonymous report.
    #[serde(default)]
    reporter: Option<ReporterBody>,
}

/// The reporter's identity (each field at most 1000 characters).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReporterBody {
    /// The reporter's name.
    #[serde(default)]
    name: Option<String>,
    /// An email address for news of the case.
    #[serde(default)]
    email: Option<String>,
    /// A phone number.
    #[serde(default)]
    phone: Option<String>,
    /// An identity document number.
    #[serde(default)]
    id_number: Option<String>,
    /// A postal address.
    #[serde(default)]
    address: Option<String>,
    /// Whether the reporter wants mail (default: yes when an email address is given).
    #[serde(default)]
    contact_by_email: Option<bool>,
}

impl From<ReporterBody> for Reporter {
    fn from(r: ReporterBody) -> Reporter {
        Reporter {
            name: r.name,
            email: r.email,
            phone: r.phone,
            id_number: r.id_number,
            address: r.address,
            contact_by_email: r.contact_by_email,
        }
    }
}

impl From<IntakeError> for Problem {
    fn from(e: IntakeError) -> Problem {
        match e {
            IntakeError::Disabled => Problem::not_found(e.to_string()),
            IntakeError::Invalid(m) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid complaint", m)
            }
            IntakeError::Reserved | IntakeError::TooLong(_) | IntakeError::BadEmail => {
                Problem::bad_request(e.to_string())
            }
            IntakeError::Store(e) => e.into(),
            IntakeError::NoKey | IntakeError::Internal(_) => Problem::internal(e),
        }
    }
}

/// Submit a complaint
///
/// Public: no token. Starts `[intake] workflow` with the case data; the reporter's identity
/// is sealed apart from the case. The answer's receipt code is shown only this once.
#[utoipa::path(post, path = "/v1/public/intake", tag = "intake", operation_id = "submit_report",
    request_body = IntakeBody,
    responses(
        (status = 201, description = "the case is started; the receipt code is shown only now", body = IntakeReply),
        (status = 400, description = "the body is not a complaint (the message names positions and fields, never values)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "intake is not enabled on this daemon", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "the case data does not match the intake workflow's input schema", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "too many reports from this address; `Retry-After` says when to try again", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn intake(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    body: Bytes,
) -> Result<Response, Problem> {
    let intake = &s.intake;
    if !s.rt.intake_enabled() {
        return Err(IntakeError::Disabled.into());
    }
    if let Some(ip) = addr
        && let Err(r) = check(&intake.per_address, &ip)
    {
        tracing::info!("intake refused: rate limit");
        return Ok(r);
    }
    let b: IntakeBody = crate::body::parse(&body)?;
    let receipt =
        s.rt.file_complaint(Complaint {
            case: b.case,
            reporter: b.reporter.map(Reporter::from),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(IntakeReply {
            receipt,
            notice: "Keep this receipt code: it is shown only now, and it is the only way to check the status of your report.".into(),
        }),
    )
        .into_response())
}

/// A status check.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    /// The receipt code given at intake.
    receipt: String,
}

/// The one answer for a wrong code and for no such case.
fn no_match() -> Problem {
    Problem::not_found("no report matches this receipt code")
}

/// Check a report's status by its receipt code
///
/// Public: no token. POST so the code stays out of URLs and access logs; a wrong code and
/// an unknown case get the same answer after the same work.
#[utoipa::path(post, path = "/v1/public/status", tag = "intake", operation_id = "report_status",
    request_body = StatusBody,
    responses(
        (status = 200, description = "the case's public status", body = StatusReply),
        (status = 400, description = "the body is not a status check", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no report matches this receipt code (the same answer for a wrong code and an unknown case)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "too many checks from this address or for this code; `Retry-After` says when to try again", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn status(
    State(s): State<AppState>,
    ClientAddr(addr): ClientAddr,
    body: Bytes,
) -> Result<Response, Problem> {
    let intake = s.intake.clone();
    if let Some(ip) = addr
        && let Err(r) = check(&intake.status_per_address, &ip)
    {
        tracing::info!("status check refused: rate limit per address");
        return Ok(r);
    }
    let b: StatusBody = crate::body::parse(&body)?;
    if let Err(r) = check(&intake.per_receipt, &Runtime::receipt_lookup(&b.receipt)) {
        tracing::info!("status check refused: rate limit per receipt");
        return Ok(r);
    }
    let Some(c) = s.rt.case_status(&b.receipt).await? else {
        return Err(no_match());
    };
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(StatusReply {
            status: c.status,
            feedback: c.feedback,
        }),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct IdentityQuery {
    /// Why the identity is read (required, at most 500 characters; recorded in the audit log).
    #[serde(default)]
    reason: Option<String>,
}

/// Read a reporter's identity
///
/// Decrypts the identity sealed at intake, where the case's workflow allows it (its
/// `identity_read:` rule, e.g. only after the leader approved the request). Each read is
/// recorded in the audit log, with who, why and the approval, before anything is decrypted.
#[utoipa::path(get, path = "/v1/instances/{id}/identity", tag = "intake",
    params(("id" = String, Path, description = "the instance id"), IdentityQuery),
    responses(
        (status = 200, description = "the reporter's decrypted identity; the read is recorded in the audit log first", body = IdentityRead),
        (status = 400, description = "no reason, or one longer than 500 characters", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "needs `read_identity`, and the approval the case's workflow asks for (`identity_read:`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "no such instance, or an anonymous report", body = ProblemBody, content_type = "application/problem+json"),
        (status = 500, description = "the store failed", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "this daemon has no identity key", body = ProblemBody, content_type = "application/problem+json"),
    ))]
async fn read_identity(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<IdentityQuery>,
) -> Result<Response, Problem> {
    caller.require(&Permission::ReadIdentity)?;
    let reason = q.reason.unwrap_or_default();
    let opened = s.rt.read_identity(&id, &caller.user, &reason).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(IdentityRead {
            instance: opened.sealed_with,
            identity: opened.identity.into(),
            read_by: caller.user,
            reason: reason.trim().to_owned(),
            approval: opened.approval.map(|a| IdentityApprovalView {
                step: a.step,
                by: a.by,
            }),
        }),
    )
        .into_response())
}

impl From<IdentityReadError> for Problem {
    fn from(e: IdentityReadError) -> Problem {
        match e {
            IdentityReadError::NoReason => Problem::bad_request(
                "give the reason for reading the reporter's identity: `?reason=…` (it is recorded)",
            ),
            IdentityReadError::ReasonTooLong => Problem::bad_request(e.to_string()),
            IdentityReadError::NoKey => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no identity key",
                e.to_string(),
            ),
            IdentityReadError::NoInstance(_) | IdentityReadError::Anonymous(_) => {
                Problem::not_found(e.to_string())
            }
            IdentityReadError::Refused(r) => Problem::new(
                StatusCode::FORBIDDEN,
                "identity read not approved",
                r.to_string(),
            ),
            IdentityReadError::Store(e) => e.into(),
            IdentityReadError::Internal(_) => Problem::internal(e),
        }
    }
}

/// Shared handle for `AppState`.
pub type Shared = Arc<Intake>;
