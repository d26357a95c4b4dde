//! Who is calling: bearer-token authentication, the caller's roles and what they permit.
//!
//! Every request passes [`authenticate`] (a middleware on the whole router). Only
//! `/healthz`, `/readyz` and `/v1/public/…` go through without a token; every other
//! path, known or not, needs a valid `Authorization: Bearer cf_…` token of a user who
//! is still in the users file. The middleware puts the [`Caller`] into the request's
//! extensions, where handlers take it with the [`Caller`] extractor, and checks each
//! handler's [`Permission`] with [`Caller::require`]. Refused calls (401 and 403) are
//! written to the audit log, as is the first use of each token on each UTC day.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, Problem};
use clearflow_runtime::config::RoleConfig;
use clearflow_runtime::data::{AuditEvent, parse_token, secret_matches};

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Start instances of this workflow (a role's `start` list, or `"*"` for all).
    Start(String),
    /// See, claim, complete and reject the tasks of one's roles.
    ActOnTasks,
    /// List and show instances with their history.
    ReadInstances,
    /// Decrypt a reporter's confidential identity (every read is audited).
    ReadIdentity,
    /// Operate the system: signals, cancellation, mail, schedules, the clock, metrics.
    /// It does not imply any of the others.
    Admin,
}

impl Permission {
    fn describe(&self) -> String {
        match self {
            Permission::Start(w) => format!("start workflow `{w}`"),
            Permission::ActOnTasks => "act on tasks".into(),
            Permission::ReadInstances => "read instances".into(),
            Permission::ReadIdentity => "read identities".into(),
            Permission::Admin => "administer clearflow".into(),
        }
    }
}

/// What a set of roles permits together (the union of the configured roles).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Grants {
    start_any: bool,
    start: BTreeSet<String>,
    tasks: bool,
    read_instances: bool,
    read_identity: bool,
    admin: bool,
}

impl Grants {
    fn of(roles: &[String], config: &BTreeMap<String, RoleConfig>) -> Grants {
        let mut g = Grants::default();
        for r in roles.iter().filter_map(|r| config.get(r)) {
            for w in &r.start {
                if w == "*" {
                    g.start_any = true;
                } else {
                    g.start.insert(w.clone());
                }
            }
            g.tasks |= r.tasks;
            g.read_instances |= r.read_instances;
            g.read_identity |= r.read_identity;
            g.admin |= r.admin;
        }
        g
    }

    fn allows(&self, p: &Permission) -> bool {
        match p {
            Permission::Start(w) => self.start_any || self.start.contains(w),
            Permission::ActOnTasks => self.tasks,
            Permission::ReadInstances => self.read_instances,
            Permission::ReadIdentity => self.read_identity,
            Permission::Admin => self.admin,
        }
    }
}

/// The authenticated user of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user id (from the users file).
    pub user: String,
    /// The user's roles, as the users file lists them now.
    pub roles: Vec<String>,
    /// The token the request was made with (`session` for the web console).
    pub token_id: String,
    grants: Arc<Grants>,
    /// The last permission refused, for the audit record of a 403.
    refused: Arc<Mutex<Option<String>>>,
}

impl Caller {
    /// The caller acting as `user` with the roles the users file gives them now, through
    /// `credential` (a token id, or `session` for the web console); `None` when the user
    /// is not in the users file. Token and session authentication both build their
    /// callers here, so the console can never show or do what the API would refuse.
    pub(crate) fn of_user(s: &AppState, user: &str, credential: String) -> Option<Caller> {
        let directory = s.rt.directory();
        let roles = directory.user(user)?.roles.clone();
        let grants = s.auth.grants(&roles);
        Some(Caller {
            user: user.to_owned(),
            roles,
            token_id: credential,
            grants: Arc::new(grants),
            refused: Arc::new(Mutex::new(None)),
        })
    }

    /// Whether the caller has `role` (roles are candidate groups of tasks, too).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the caller's roles grant `p`.
    pub fn can(&self, p: &Permission) -> bool {
        self.grants.allows(p)
    }

    /// `Ok` when the caller's roles grant `p`, otherwise a 403 problem (audited).
    pub fn require(&self, p: &Permission) -> Result<(), Problem> {
        if self.can(p) {
            return Ok(());
        }
        let what = p.describe();
        if let Ok(mut slot) = self.refused.lock() {
            *slot = Some(what.clone());
        }
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your roles do not allow you to {what}"),
        ))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Caller, Problem> {
        // `authenticate` put it there; a handler on a public path that asks for a
        // caller gets the same 401 as a request without a token.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(unauthorized)
    }
}

/// The roles of the configuration, swapped on SIGHUP.
pub struct Auth {
    roles: RwLock<Arc<BTreeMap<String, RoleConfig>>>,
}

impl Auth {
    /// Checks the roles; every problem at once.
    pub fn new(roles: BTreeMap<String, RoleConfig>) -> Result<Auth, Vec<String>> {
        check_roles(&roles)?;
        Ok(Auth {
            roles: RwLock::new(Arc::new(roles)),
        })
    }

    /// Replaces the roles when they are valid; otherwise keeps the current ones.
    pub fn set_roles(&self, roles: BTreeMap<String, RoleConfig>) -> Result<(), Vec<String>> {
        check_roles(&roles)?;
        *self.roles.write().expect("lock") = Arc::new(roles);
        Ok(())
    }

    fn grants(&self, roles: &[String]) -> Grants {
        Grants::of(roles, &self.roles.read().expect("lock"))
    }
}

/// A role that administers must not also read identities: the two are granted apart,
/// so giving someone the admin role never shows them who reported a case.
fn check_roles(roles: &BTreeMap<String, RoleConfig>) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (name, r) in roles {
        if r.admin && r.read_identity {
            problems.push(format!(
                "role `{name}`: `admin` and `read_identity` cannot be granted by one role; use two roles"
            ));
        }
        if r.start.iter().any(|w| w.trim().is_empty()) {
            problems.push(format!("role `{name}`: an empty workflow id in `start`"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn unauthorized() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required (Authorization: Bearer cf_…)",
    )
}

/// Paths served without a token.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz") || path.starts_with("/v1/public/")
}

/// Why a token was refused (recorded in the audit log, never told to the caller).
enum Refusal {
    Missing,
    Malformed,
    UnknownToken(String),
    WrongSecret(String),
    Revoked(String, String),
    Expired(String, String),
    UnknownUser(String, String),
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "no bearer token",
            Refusal::Malformed => "malformed token",
            Refusal::UnknownToken(_) => "unknown token",
            Refusal::WrongSecret(_) => "wrong token secret",
            Refusal::Revoked(..) => "revoked token",
            Refusal::Expired(..) => "expired token",
            Refusal::UnknownUser(..) => "user not in the users file",
        }
    }
    fn token(&self) -> Option<&str> {
        match self {
            Refusal::Missing | Refusal::Malformed => None,
            Refusal::UnknownToken(t)
            | Refusal::WrongSecret(t)
            | Refusal::Revoked(t, _)
            | Refusal::Expired(t, _)
            | Refusal::UnknownUser(t, _) => Some(t),
        }
    }
    fn user(&self) -> Option<&str> {
        match self {
            Refusal::Revoked(_, u) | Refusal::Expired(_, u) | Refusal::UnknownUser(_, u) => Some(u),
            _ => None,
        }
    }
}

const DAY_MS: i64 = 86_400_000;

async fn identify(
    s: &AppState,
    parts: &Parts,
    now: i64,
) -> Result<Result<Caller, Refusal>, Problem> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(Err(Refusal::Missing));
    };
    let text = value.to_str().unwrap_or_default().trim();
    let token = match text.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => return Ok(Err(Refusal::Malformed)),
    };
    let Some((id, secret)) = parse_token(token) else {
        return Ok(Err(Refusal::Malformed));
    };
    let Some(record) = s.rt.token(id).await? else {
        return Ok(Err(Refusal::UnknownToken(id.to_owned())));
    };
    if !secret_matches(secret, &record.secret_hash) {
        return Ok(Err(Refusal::WrongSecret(record.id)));
    }
    if record.revoked_at.is_some() {
        return Ok(Err(Refusal::Revoked(record.id, record.user)));
    }
    if record.expires_at.is_some_and(|e| e <= now) {
        return Ok(Err(Refusal::Expired(record.id, record.user)));
    }
    let Some(caller) = Caller::of_user(s, &record.user, record.id.clone()) else {
        return Ok(Err(Refusal::UnknownUser(record.id, record.user)));
    };
    // The first use of a token on each UTC day is recorded (the conditional update lets
    // exactly one of several concurrent first calls write the audit row).
    let day = now - now.rem_euclid(DAY_MS);
    if record.last_used_at.is_none_or(|t| t < day) && s.rt.touch_token(&record.id, now, day).await?
    {
        let event = AuditEvent {
            at: now,
            kind: "token.used".into(),
            actor: record.user.clone(),
            instance_id: None,
            detail: json!({ "token": record.id, "first_use_on": clearflow_runtime::clock::from_ms(day).format("%Y-%m-%d").to_string() }),
        };
        if let Err(e) = s.rt.audit(&event).await {
            tracing::error!(error = %e, "writing the audit log");
        }
    }
    Ok(Ok(caller))
}

async fn record(s: &AppState, event: AuditEvent) {
    if let Err(e) = s.rt.audit(&event).await {
        tracing::error!(error = %e, kind = %event.kind, "writing the audit log");
    }
}

/// The middleware that authenticates every non-public request and audits refusals.
pub async fn authenticate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if is_public(&path) {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let now = clearflow_runtime::clock::ms(s.rt.now());
    let (mut parts, body) = req.into_parts();
    let caller = match identify(&s, &parts, now).await {
        Ok(Ok(c)) => c,
        Ok(Err(refusal)) => {
            tracing::info!(%method, %path, reason = refusal.reason(), "refused: 401");
            let event = AuditEvent {
                at: now,
                kind: "auth.refused".into(),
                actor: refusal.user().unwrap_or("anonymous").to_owned(),
                instance_id: None,
                detail: json!({ "status": 401, "method": method, "path": path, "reason": refusal.reason(), "token": refusal.token() }),
            };
            record(&s, event).await;
            let mut resp = unauthorized().into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
        Err(problem) => return problem.into_response(),
    };
    parts.extensions.insert(caller.clone());
    let resp = next.run(Request::from_parts(parts, body)).await;
    if resp.status() == StatusCode::FORBIDDEN {
        let missing = caller.refused.lock().ok().and_then(|m| m.clone());
        tracing::info!(%method, %path, user = %caller.user, "refused: 403");
        let event = AuditEvent {
            at: now,
            kind: "auth.forbidden".into(),
            actor: caller.user.clone(),
            instance_id: None,
            detail: json!({ "status": 403, "method": method, "path": path, "token": caller.token_id, "missing": missing }),
        };
        record(&s, event).await;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(start: &[&str], tasks: bool, read: bool, identity: bool, admin: bool) -> RoleConfig {
        RoleConfig {
            start: start.iter().map(|s| (*s).to_owned()).collect(),
            tasks,
            read_instances: read,
            read_identity: identity,
            admin,
        }
    }

    #[test]
    fn grants_are_the_union_of_configured_roles_and_admin_implies_nothing_else() {
        let config: BTreeMap<String, RoleConfig> = [
            (
                "intake".to_owned(),
                role(&["complaint"], true, false, false, false),
            ),
            ("reader".to_owned(), role(&[], false, true, false, false)),
            ("any".to_owned(), role(&["*"], false, false, false, false)),
            ("admin".to_owned(), role(&[], false, false, false, true)),
        ]
        .into_iter()
        .collect();
        let check = |roles: &[&str], p: Permission| {
            let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
            Grants::of(&roles, &config).allows(&p)
        };
        assert!(check(&["intake"], Permission::Start("complaint".into())));
        assert!(!check(&["intake"], Permission::Start("other".into())));
        assert!(check(&["any"], Permission::Start("other".into())));
        assert!(check(&["intake"], Permission::ActOnTasks));
        assert!(!check(&["intake"], Permission::ReadInstances));
        assert!(check(&["intake", "reader"], Permission::ReadInstances));
        assert!(check(&["admin"], Permission::Admin));
        for p in [
            Permission::Start("complaint".into()),
            Permission::ActOnTasks,
            Permission::ReadInstances,
            Permission::ReadIdentity,
        ] {
            assert!(!check(&["admin"], p.clone()), "admin must not imply {p:?}");
        }
        // A role the configuration does not define grants nothing.
        assert!(!check(&["unconfigured"], Permission::ActOnTasks));
    }

    #[test]
    fn a_role_cannot_both_administer_and_read_identities() {
        let config: BTreeMap<String, RoleConfig> =
            [("boss".to_owned(), role(&[], false, false, true, true))]
                .into_iter()
                .collect();
        let errors = check_roles(&config).expect_err("refused");
        assert!(errors[0].contains("role `boss`"), "{errors:?}");
    }

    #[test]
    fn public_paths() {
        assert!(is_public("/healthz"));
        assert!(is_public("/readyz"));
        assert!(is_public("/v1/public/status"));
        assert!(!is_public("/metrics"));
        assert!(!is_public("/v1/publicity"));
        assert!(!is_public("/v1/instances"));
    }
}
