//! Authentication primitives, pure: password hashes, TOTP, recovery codes, session
//! tokens, CSRF tokens, lockout and session expiry, security headers. Time is always a
//! parameter (seconds since the Unix epoch); randomness comes in as bytes from
//! [`random`] so tests can fix it.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What can go wrong with the primitives here.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A stored password hash could not be read.
    #[error("stored password hash is malformed")]
    MalformedHash,
    /// Hashing failed (bad parameters).
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The QR code could not be built (the URI is too long).
    #[error("qr code: {0}")]
    Qr(String),
}

/// `N` bytes from the operating system's generator.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random generator works");
    b
}

// ----- passwords -----

/// An Argon2id PHC string for `password` (OWASP parameters m=19 MiB, t=2, p=1), salted
/// with `salt` (16 bytes from [`random`]).
pub fn hash_password(password: &str, salt: [u8; 16]) -> Result<String, AuthError> {
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hashing(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hashing(e.to_string()))
}

/// Whether `password` matches the PHC string `stored`.
pub fn verify_password(password: &str, stored: &str) -> Result<bool, AuthError> {
    let parsed = PasswordHash::new(stored).map_err(|_| AuthError::MalformedHash)?;
    Ok(argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

// ----- TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s; computed by totp-rs) -----

/// The TOTP time step.
pub const TOTP_STEP: u64 = 30;

fn totp(secret: &[u8]) -> totp_rs::TOTP {
    // `new_unchecked`: the secret length is ours to choose (20 bytes from `enrol`), and
    // the account label is not part of the code.
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, TOTP_STEP, secret.to_vec())
}

/// The 6-digit code of `secret` for time step `step`.
pub fn totp_code(secret: &[u8], step: u64) -> String {
    totp(secret).generate(step * TOTP_STEP)
}

/// Checks `code` at `now` with one step of skew either way. Returns the matched step,
/// to be stored as the last used one; a step at or before `last_used` is refused so a
/// code works once.
pub fn verify_totp(secret: &[u8], code: &str, now: u64, last_used: Option<u64>) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret);
    let step = now / TOTP_STEP;
    let mut found = None;
    // Every candidate is compared, so timing does not tell which one matched.
    for s in [step.saturating_sub(1), step, step + 1] {
        let ok: bool = totp
            .generate(s * TOTP_STEP)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .into();
        if ok && last_used.is_none_or(|l| s > l) && found.is_none() {
            found = Some(s);
        }
    }
    found
}

/// The secret of a base32 key (as [`Enrolment::base32`] gives it); `None` when malformed.
pub fn decode_base32(text: &str) -> Option<Vec<u8>> {
    totp_rs::Secret::Encoded(text.trim().to_ascii_uppercase())
        .to_bytes()
        .ok()
}

/// A new TOTP enrolment: the secret (20 bytes), its base32 form and the otpauth URI.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The secret, stored encrypted by the caller.
    pub secret: Vec<u8>,
    /// The secret in base32 without padding, for typing into an app.
    pub base32: String,
    /// The `otpauth://totp/...` URI the QR code holds.
    pub uri: String,
}

/// An enrolment for `account` at `issuer` with `secret` (20 bytes from [`random`]).
pub fn enrol(issuer: &str, account: &str, secret: [u8; 20]) -> Enrolment {
    let base32 = base32(&secret);
    let enc = |s: &str| {
        form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let uri = format!(
        "otpauth://totp/{}:{}?secret={base32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(account),
        enc(issuer)
    );
    Enrolment {
        secret: secret.to_vec(),
        base32,
        uri,
    }
}

/// The QR code of `uri` as an SVG element (no XML declaration), drawn offline.
pub fn qr_svg(uri: &str) -> Result<String, AuthError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| AuthError::Qr(e.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(match svg.find("<svg") {
        Some(i) => svg[i..].to_owned(),
        None => svg,
    })
}

fn base32(bytes: &[u8]) -> String {
    match totp_rs::Secret::Raw(bytes.to_vec()).to_encoded() {
        totp_rs::Secret::Encoded(s) => s.trim_end_matches('=').to_owned(),
        totp_rs::Secret::Raw(_) => unreachable!("to_encoded gives an encoded secret"),
    }
}

// ----- recovery codes -----

/// Ten recovery codes (`xxxxx-xxxxx`, lowercase base32) from 80 random bytes.
pub fn recovery_codes(random: [u8; 80]) -> Vec<String> {
    random
        .chunks(8)
        .map(|c| {
            let s = base32(c).to_ascii_lowercase();
            format!("{}-{}", &s[..5], &s[5..10])
        })
        .collect()
}

/// The stored form of a recovery code (sha256 hex of the normalised code). The codes
/// carry 50 bits each, so a fast hash suffices against a stolen table.
pub fn hash_recovery_code(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex(&Sha256::digest(norm.as_bytes()))
}

/// Uses `code` against the stored hashes: on a match, the hash is removed (a code works
/// once) and true returned.
pub fn use_recovery_code(code: &str, stored: &mut Vec<String>) -> bool {
    let h = hash_recovery_code(code);
    let pos = stored
        .iter()
        .position(|s| bool::from(s.as_bytes().ct_eq(h.as_bytes())));
    pos.map(|p| stored.remove(p)).is_some()
}

// ----- sessions and CSRF -----

/// A new session: the cookie value and the hash the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    /// The cookie value (256 bits, base64url). Never stored.
    pub cookie: String,
    /// sha256 hex of the cookie value: the store's key.
    pub hash: String,
}

/// A session token from 32 random bytes.
pub fn new_session(random: [u8; 32]) -> SessionToken {
    let cookie = URL_SAFE_NO_PAD.encode(random);
    SessionToken {
        hash: session_hash(&cookie),
        cookie,
    }
}

/// The stored form of a session cookie value.
pub fn session_hash(cookie: &str) -> String {
    hex(&Sha256::digest(cookie.as_bytes()))
}

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-clearflow_session";
/// Attributes of the session cookie.
pub const SESSION_COOKIE_ATTRS: &str = "Secure; HttpOnly; SameSite=Strict; Path=/";

/// The CSRF token of a session: HMAC-SHA-256 of its hash under the server's key.
pub fn csrf_token(server_key: &[u8], session_hash: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(server_key).expect("hmac takes any key length");
    mac.update(b"clearflow-csrf\0");
    mac.update(session_hash.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Whether a submitted CSRF token is the session's, compared in constant time.
pub fn csrf_ok(server_key: &[u8], session_hash: &str, submitted: &str) -> bool {
    csrf_token(server_key, session_hash)
        .as_bytes()
        .ct_eq(submitted.as_bytes())
        .into()
}

/// Session lifetimes, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Longest time without a request (default 30 min).
    pub idle: u64,
    /// Longest life from sign-in (default 8 h).
    pub absolute: u64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: 30 * 60,
            absolute: 8 * 3600,
        }
    }
}

/// Whether a session is still alive at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Alive; the caller records `now` as its last use.
    Alive,
    /// Unused for longer than the idle limit.
    IdleExpired,
    /// Older than the absolute limit.
    Expired,
}

impl SessionPolicy {
    /// The state of a session created at `created` and last used at `last_seen`.
    pub fn check(&self, created: u64, last_seen: u64, now: u64) -> SessionState {
        if now.saturating_sub(created) >= self.absolute {
            SessionState::Expired
        } else if now.saturating_sub(last_seen) >= self.idle {
            SessionState::IdleExpired
        } else {
            SessionState::Alive
        }
    }
}

/// Lockout after repeated failures: free attempts, then a doubling wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures allowed before any wait (default 5).
    pub free: u32,
    /// The first wait, in seconds (default 60).
    pub base: u64,
    /// The longest wait, in seconds (default 1 h).
    pub max: u64,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout {
            free: 5,
            base: 60,
            max: 3600,
        }
    }
}

impl Lockout {
    /// When the next attempt is allowed after `failures` consecutive failures, the last
    /// at `last_failure`; `None` when an attempt is allowed now.
    pub fn locked_until(&self, failures: u32, last_failure: u64, now: u64) -> Option<u64> {
        if failures < self.free {
            return None;
        }
        let doublings = (failures - self.free).min(32);
        let wait = self.base.saturating_mul(1u64 << doublings).min(self.max);
        let until = last_failure.saturating_add(wait);
        (now < until).then_some(until)
    }
}

// ----- security headers -----

/// Headers for the whistleblower's pages: no script at all.
pub fn public_headers() -> Vec<(&'static str, &'static str)> {
    headers(
        "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
}

/// Headers for staff pages: scripts from this host only.
pub fn staff_headers() -> Vec<(&'static str, &'static str)> {
    headers(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
}

fn headers(csp: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("Content-Security-Policy", csp),
        ("Referrer-Policy", "no-referrer"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Cache-Control", "no-store"),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("正确 horse", [7; 16]).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("正确 horse", &h).unwrap());
        assert!(!verify_password("wrong", &h).unwrap());
        assert!(verify_password("x", "not a hash").is_err());
    }

    #[test]
    fn totp_rfc6238_vectors() {
        // RFC 6238 appendix B, SHA-1, last six digits.
        let key = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(totp_code(key, t / TOTP_STEP), code, "{t}");
        }
    }

    #[test]
    fn totp_skew_and_replay() {
        let key = b"12345678901234567890";
        let now = 1111111111;
        let step = now / TOTP_STEP;
        assert_eq!(
            verify_totp(key, &totp_code(key, step), now, None),
            Some(step)
        );
        assert_eq!(
            verify_totp(key, &totp_code(key, step - 1), now, None),
            Some(step - 1)
        );
        assert_eq!(
            verify_totp(key, &totp_code(key, step + 1), now, None),
            Some(step + 1)
        );
        assert_eq!(verify_totp(key, &totp_code(key, step + 2), now, None), None);
        assert_eq!(
            verify_totp(key, &totp_code(key, step), now, Some(step)),
            None,
            "replay"
        );
        assert_eq!(verify_totp(key, "12345", now, None), None);
        assert_eq!(verify_totp(key, "abcdef", now, None), None);
    }

    #[test]
    fn enrolment_and_qr() {
        let e = enrol("清流 clearflow", "li@example", [0xff; 20]);
        assert_eq!(e.base32.len(), 32);
        assert!(
            e.uri
                .starts_with("otpauth://totp/%E6%B8%85%E6%B5%81%20clearflow:li%40example?secret=")
        );
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let svg = qr_svg(&e.uri).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<path"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn recovery_codes_work_once() {
        let codes = recovery_codes([42; 80]);
        assert_eq!(codes.len(), 10);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-')
        );
        let codes = recovery_codes(std::array::from_fn(|i| i as u8));
        let mut stored: Vec<String> = codes.iter().map(|c| hash_recovery_code(c)).collect();
        assert!(use_recovery_code(
            &codes[3].to_uppercase().replace('-', " "),
            &mut stored
        ));
        assert!(!use_recovery_code(&codes[3], &mut stored));
        assert_eq!(stored.len(), 9);
    }

    #[test]
    fn sessions_and_csrf() {
        let s = new_session([1; 32]);
        assert_eq!(s.cookie.len(), 43);
        assert_eq!(session_hash(&s.cookie), s.hash);
        assert_ne!(s, new_session([2; 32]));
        let t = csrf_token(b"server key", &s.hash);
        assert!(csrf_ok(b"server key", &s.hash, &t));
        assert!(
            !csrf_ok(b"server key", &new_session([2; 32]).hash, &t),
            "bound to the session"
        );
        assert!(!csrf_ok(b"other key", &s.hash, &t));
        assert!(!csrf_ok(b"server key", &s.hash, ""));
    }

    #[test]
    fn session_expiry() {
        let p = SessionPolicy::default();
        assert_eq!(p.check(0, 0, 29 * 60), SessionState::Alive);
        assert_eq!(p.check(0, 0, 30 * 60), SessionState::IdleExpired);
        assert_eq!(p.check(0, 8 * 3600 - 10, 8 * 3600 - 1), SessionState::Alive);
        assert_eq!(p.check(0, 8 * 3600 - 10, 8 * 3600), SessionState::Expired);
    }

    #[test]
    fn lockout_backoff() {
        let l = Lockout::default();
        assert_eq!(l.locked_until(4, 100, 100), None);
        assert_eq!(l.locked_until(5, 100, 100), Some(160));
        assert_eq!(l.locked_until(5, 100, 160), None);
        assert_eq!(l.locked_until(6, 100, 100), Some(220));
        assert_eq!(l.locked_until(40, 100, 100), Some(3700));
    }

    #[test]
    fn headers_forbid_scripts_on_public_pages() {
        let find =
            |h: &[(&str, &str)], n: &str| h.iter().find(|(k, _)| *k == n).unwrap().1.to_owned();
        let p = public_headers();
        assert!(find(&p, "Content-Security-Policy").contains("script-src 'none'"));
        assert!(find(&p, "Content-Security-Policy").contains("frame-ancestors 'none'"));
        assert_eq!(find(&p, "Referrer-Policy"), "no-referrer");
        assert_eq!(find(&p, "X-Content-Type-Options"), "nosniff");
        assert!(find(&staff_headers(), "Content-Security-Policy").contains("script-src 'self'"));
    }
}
