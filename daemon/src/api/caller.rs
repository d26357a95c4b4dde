//! The authenticated caller of an API request: who they are, their roles and what they may do.
//!
//! INTERIM RESOLVER: this file is the agreed `Caller` interface with a stand-in
//! resolver, written for the task API before the authentication branch lands. Here the
//! bearer token is simply a user id from the directory (`Authorization: Bearer li.na`);
//! the authentication branch replaces this file with real tokens (random, hashed, with
//! expiry and revocation) and per-role permissions from the configuration. Callers use
//! only `user`, `roles`, `has_role`, `can` and `require`, which stay as they are.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::{AppState, Problem};

/// What a caller may be allowed to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Start instances of this workflow.
    Start(String),
    /// Claim, complete and reject tasks of their roles.
    ActOnTasks,
    /// Read instances and their history.
    ReadInstances,
    /// Read a whistleblower's identity.
    ReadIdentity,
    /// Administer the daemon.
    Admin,
}

/// The user behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user id.
    pub user: String,
    /// The user's roles.
    pub roles: Vec<String>,
    permissions: Vec<Permission>,
}

impl Caller {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the caller may do `p`.
    pub fn can(&self, p: &Permission) -> bool {
        self.permissions.contains(p) || self.permissions.contains(&Permission::Admin)
    }

    /// `Ok` when the caller may do `p`, else a 403 problem.
    pub fn require(&self, p: &Permission) -> Result<(), Problem> {
        if self.can(p) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{} may not do this ({p:?})", self.user),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let unauthorized = |detail: &str| {
            Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail.to_owned())
        };
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("a bearer token is required"))?;
        let directory = state.registry().directory();
        let user = directory
            .user(token)
            .ok_or_else(|| unauthorized("the bearer token is not valid"))?;
        // Interim permissions: any role acts on tasks and reads instances; `admin` is admin.
        let mut permissions = Vec::new();
        if !user.roles.is_empty() {
            permissions.push(Permission::ActOnTasks);
            permissions.push(Permission::ReadInstances);
        }
        if user.roles.iter().any(|r| r == "admin") {
            permissions.push(Permission::Admin);
        }
        Ok(Caller {
            user: user.id.clone(),
            roles: user.roles.clone(),
            permissions,
        })
    }
}
