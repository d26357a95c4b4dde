//! API tokens: generation, the `cf_ID_SECRET` format, and their rows (hashes only).
//!
//! A token is `cf_` + a 64-bit id (16 hex digits) + `_` + a 256-bit secret (64 hex
//! digits) from the operating system's random source. The id is looked up; the secret
//! is kept only as its SHA-256 and compared in constant time. A slow password hash
//! (Argon2) protects low-entropy secrets against guessing after a leak of the table; a
//! 256-bit random secret cannot be guessed either way, so one fast hash suffices and
//! keeps authentication cheap on every request.

use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use subtle::ConstantTimeEq;

use super::{Store, StoreError};
use crate::AuditEvent;

/// The prefix of every token, so a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "cf_";

/// A token as stored (without its secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRecord {
    /// The public id (the middle part of the token).
    pub id: String,
    /// The user it acts as.
    pub user: String,
    /// A name or comment given at creation.
    pub name: Option<String>,
    /// SHA-256 of the secret (hex).
    #[serde(skip)]
    pub secret_hash: String,
    /// Created (ms).
    pub created_at: i64,
    /// Expires (ms); never when absent.
    pub expires_at: Option<i64>,
    /// Revoked (ms).
    pub revoked_at: Option<i64>,
    /// The first use on the latest day it was used (ms).
    pub last_used_at: Option<i64>,
}

/// A token just created: the only time its full text exists.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The stored record.
    pub record: TokenRecord,
    /// The token to hand to the user (`cf_…`).
    pub token: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // Without the operating system's random source no secret can be made safely, and
    // nothing else clearflow does would be trustworthy either: stop.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex(&buf)
}

/// SHA-256 of a token secret, hex.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Splits `cf_ID_SECRET` into id and secret; `None` when it is not of that shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 16) && hex_of(secret, 64)).then_some((id, secret))
}

/// Whether `secret` hashes to `stored` (hex), in time independent of where they differ.
pub fn secret_matches(secret: &str, stored: &str) -> bool {
    hash_secret(secret)
        .as_bytes()
        .ct_eq(stored.as_bytes())
        .into()
}

fn token_record(r: &AnyRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        id: r.try_get("id")?,
        user: r.try_get("user_id")?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

const TOKEN_COLUMNS: &str =
    "id, user_id, name, secret_hash, created_at, expires_at, revoked_at, last_used_at";

impl Store {
    /// Creates a token for `user`, recording `token.created` in the audit log in the
    /// same transaction. The returned text is not stored anywhere.
    pub async fn create_token(
        &self,
        user: &str,
        name: Option<&str>,
        expires_at: Option<i64>,
        actor: &str,
        now: i64,
    ) -> Result<IssuedToken, StoreError> {
        let id = random_hex(8);
        let secret = random_hex(32);
        let record = TokenRecord {
            id: id.clone(),
            user: user.to_owned(),
            name: name.map(str::to_owned),
            secret_hash: hash_secret(&secret),
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)"
        ))
        .bind(&record.id)
        .bind(&record.user)
        .bind(&record.name)
        .bind(&record.secret_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        super::audit::append_audit(
            &mut tx,
            self.backend,
            &AuditEvent {
                at: now,
                kind: "token.created".into(),
                actor: actor.to_owned(),
                instance_id: None,
                detail: json!({ "token": id, "user": user, "name": name, "expires_at": expires_at }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedToken {
            record,
            token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        })
    }

    /// One token by id.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(token_record).transpose()?)
    }

    /// Every token (of `user`, when given), newest first.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = match user {
            Some(u) => sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 ORDER BY created_at DESC, id"
            ))
            .bind(u)
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC, id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| token_record(r).map_err(StoreError::from))
            .collect()
    }

    /// Revokes a token, recording `token.revoked`. False when there is no such token
    /// or it was revoked before.
    pub async fn revoke_token(&self, id: &str, actor: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let r =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        super::audit::append_audit(
            &mut tx,
            self.backend,
            &AuditEvent {
                at: now,
                kind: "token.revoked".into(),
                actor: actor.to_owned(),
                instance_id: None,
                detail: json!({ "token": id }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a token used at `now` unless it was already used since `since`; true for the
    /// one call that changed it (the first use in that period).
    pub async fn touch_token(&self, id: &str, now: i64, since: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(since)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape_and_constant_time_check() {
        let secret = "ab".repeat(32);
        let token = format!("cf_0123456789abcdef_{secret}");
        assert_eq!(
            parse_token(&token),
            Some(("0123456789abcdef", secret.as_str()))
        );
        for bad in [
            "",
            "cf_",
            "xx_0123456789abcdef_00",
            "cf_0123456789abcdef",
            "cf_0123456789abcde_".to_owned().as_str(),
            &format!("cf_0123456789abcdeg_{secret}"),
            &format!("cf_0123456789abcdef_{secret}0"),
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
        let stored = hash_secret(&secret);
        assert!(secret_matches(&secret, &stored));
        assert!(!secret_matches(&"cd".repeat(32), &stored));
        assert_eq!(stored.len(), 64);
    }
}
