//! INTERIM authenticated caller, with the agreed interface only; replaced by the auth work.
//!
//! This file exists so the identity endpoint can be written against the agreed
//! `Caller`/`Permission` interface before token authentication is merged. It trusts
//! `Authorization: Bearer USER-ID` for any user in the users file, which is **not**
//! authentication: the merge replaces this whole file with the token-checking one.
//! Until then the permissions follow role names: `admin` administers,
//! `identity-reader` reads identities, and any role reads instances, acts on tasks and
//! starts workflows.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;

use super::{AppState, Problem};

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Start instances of this workflow.
    Start(String),
    /// See and act on the tasks of one's roles.
    ActOnTasks,
    /// List and show instances with their history.
    ReadInstances,
    /// Decrypt a reporter's confidential identity (every read is recorded).
    ReadIdentity,
    /// Operate the system.
    Admin,
}

/// The user a request is made by.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user id (from the users file).
    pub user: String,
    /// The user's roles.
    pub roles: Vec<String>,
    permissions: Vec<Permission>,
}

impl Caller {
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the caller's roles grant `p`.
    pub fn can(&self, p: &Permission) -> bool {
        self.permissions.iter().any(|q| match (q, p) {
            (Permission::Start(a), Permission::Start(_)) => a == "*",
            _ => q == p,
        })
    }

    /// `Ok` when the caller's roles grant `p`, otherwise a 403 problem.
    pub fn require(&self, p: &Permission) -> Result<(), Problem> {
        if self.can(p) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "your roles do not allow this",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Caller, Problem> {
        let unauthorized = || {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
        };
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauthorized)?;
        let directory = s.registry().directory();
        let user = directory.user(token).ok_or_else(unauthorized)?;
        let mut permissions = Vec::new();
        if !user.roles.is_empty() {
            permissions.extend([
                Permission::Start("*".into()),
                Permission::ActOnTasks,
                Permission::ReadInstances,
            ]);
        }
        if user.roles.iter().any(|r| r == "admin") {
            permissions.push(Permission::Admin);
        }
        if user.roles.iter().any(|r| r == "identity-reader") {
            permissions.push(Permission::ReadIdentity);
        }
        Ok(Caller {
            user: user.id.clone(),
            roles: user.roles.clone(),
            permissions,
        })
    }
}
