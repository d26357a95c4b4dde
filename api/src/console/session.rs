//! Staff sessions: the cookie, the stored session, its expiry, and the CSRF token.
//!
//! A session is stored under the SHA-256 of its cookie value (a leaked table opens no
//! session). Each request checks it is live (not revoked, within the idle and absolute
//! lifetimes on the runtime's clock), that its user is still in the users file, and
//! builds the [`Caller`] from the user's roles as they are now. The CSRF token of a
//! session is an HMAC keyed by the cookie value itself, so every daemon on one store
//! computes the same token without a shared key.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use clearflow_runtime::console::{SessionRow, SessionStage};
use clearflow_web::Locale;
use clearflow_web::auth::{SessionPolicy, SessionState, csrf_ok, csrf_token, session_hash};
use serde_json::json;

use crate::AppState;
use crate::caller::Caller;
use clearflow_runtime::clock::ms;
use clearflow_runtime::data::AuditEvent;

/// The cookie's name and attributes, by `[web] secure_cookie`.
pub(super) fn cookie_name(s: &AppState) -> &'static str {
    if s.rt.config().web.secure_cookie {
        clearflow_web::auth::SESSION_COOKIE
    } else {
        "clearflow_session"
    }
}

/// `Set-Cookie` for a new session.
pub(super) fn set_cookie(s: &AppState, value: &str) -> HeaderValue {
    let attrs = if s.rt.config().web.secure_cookie {
        clearflow_web::auth::SESSION_COOKIE_ATTRS
    } else {
        "HttpOnly; SameSite=Strict; Path=/"
    };
    HeaderValue::from_str(&format!("{}={value}; {attrs}", cookie_name(s)))
        .expect("base64url and fixed attributes")
}

/// `Set-Cookie` that removes the session cookie.
pub(super) fn clear_cookie(s: &AppState) -> HeaderValue {
    let attrs = if s.rt.config().web.secure_cookie {
        clearflow_web::auth::SESSION_COOKIE_ATTRS
    } else {
        "HttpOnly; SameSite=Strict; Path=/"
    };
    HeaderValue::from_str(&format!("{}=; Max-Age=0; {attrs}", cookie_name(s))).expect("fixed text")
}

/// The session cookie's value, if the request carries one.
pub(super) fn cookie(s: &AppState, parts: &Parts) -> Option<String> {
    let name = cookie_name(s);
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The session policy of the configuration.
pub(super) fn policy(s: &AppState) -> SessionPolicy {
    let w = &s.rt.config().web;
    SessionPolicy {
        idle: w.session_idle_minutes * 60,
        absolute: w.session_hours * 3600,
    }
}

/// A session cookie and its stored row, at any stage of sign-in.
pub(crate) struct Pending {
    pub cookie: String,
    pub row: SessionRow,
}

impl Pending {
    pub fn csrf(&self) -> String {
        csrf_token(self.cookie.as_bytes(), &self.row.id_hash)
    }
    pub fn csrf_ok(&self, submitted: &str) -> bool {
        csrf_ok(self.cookie.as_bytes(), &self.row.id_hash, submitted)
    }
}

/// The live session of the request at `stage`, expired ones revoked on the way.
pub(super) async fn pending(s: &AppState, parts: &Parts, stage: SessionStage) -> Option<Pending> {
    let cookie = cookie(s, parts)?;
    let hash = session_hash(&cookie);
    let row = s.rt.session(&hash).await.ok().flatten()?;
    if row.revoked_at.is_some() || row.stage != stage {
        return None;
    }
    let now = ms(s.rt.now());
    let state = policy(s).check(
        (row.created_at / 1000) as u64,
        (row.last_seen / 1000) as u64,
        (now / 1000) as u64,
    );
    if state != SessionState::Alive {
        if s.rt.revoke_session(&hash).await.unwrap_or(false) {
            audit(
                s,
                "auth.session_expired",
                &row.user,
                json!({ "reason": format!("{state:?}") }),
            )
            .await;
        }
        return None;
    }
    Some(Pending { cookie, row })
}

/// The user a trusted reverse proxy says is signed in (`[web.proxy_auth]`), when this
/// request carries its header. The header from an address that is not a trusted proxy
/// is ignored, and logged: someone is trying to sign in as another user.
pub(super) fn proxy_user(s: &AppState, parts: &Parts) -> Option<String> {
    let p = s.rt.config().web.proxy_auth.as_ref()?;
    let value = parts.headers.get(p.header.as_str())?;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if !peer.is_some_and(|ip| p.trusts(ip)) {
        tracing::warn!(
            peer = ?peer,
            header = %p.header,
            "ignored a sign-in header from an address that is not a trusted proxy"
        );
        return None;
    }
    let user = value.to_str().ok()?.trim();
    (!user.is_empty() && user.len() <= 200).then(|| user.to_owned())
}

/// A signed-in staff member: the caller (the same one a token would give), the session
/// and the page locale.
pub(crate) struct Staff {
    pub caller: Caller,
    pub session: Pending,
    pub locale: Locale,
}

impl Staff {
    /// The CSRF token for the forms of this session.
    pub fn csrf(&self) -> String {
        self.session.csrf()
    }
}

/// Where a request without a live session goes: the sign-in page.
pub(crate) struct SignInFirst;

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        Redirect::to("/sign-in").into_response()
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Staff, SignInFirst> {
        let session = pending(s, parts, SessionStage::Active)
            .await
            .ok_or(SignInFirst)?;
        // Behind a single-sign-on proxy the proxy's user is the one signed in: a session
        // of someone else (a shared browser) is not used; sign-in makes the right one.
        if let Some(user) = proxy_user(s, parts)
            && user != session.row.user
        {
            return Err(SignInFirst);
        }
        let Some(caller) = Caller::of_user(s, &session.row.user, "session".into()) else {
            // Removed from the users file since signing in.
            let _ = s.rt.revoke_session(&session.row.id_hash).await;
            return Err(SignInFirst);
        };
        if let Err(e) = s.rt.touch_session(&session.row.id_hash).await {
            tracing::warn!(error = %e, "recording a session's last use");
        }
        let directory = s.rt.directory();
        let user = directory.user(&caller.user);
        let locale = super::locale(parts, None, user.and_then(|u| u.locale.as_deref()));
        Ok(Staff {
            caller,
            session,
            locale,
        })
    }
}

/// Records a sign-in event in the audit chain (failures are logged, not fatal).
pub(super) async fn audit(s: &AppState, kind: &str, actor: &str, detail: serde_json::Value) {
    let event = AuditEvent {
        at: ms(s.rt.now()),
        kind: kind.into(),
        actor: actor.to_owned(),
        instance_id: None,
        detail,
    };
    if let Err(e) = s.rt.audit(&event).await {
        tracing::error!(error = %e, %kind, "writing the audit log");
    }
}
