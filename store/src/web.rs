//! Rows of the web console: staff credentials, sessions, case messages and counters.
//!
//! Nothing here is secret in clear: passwords are Argon2id hashes, sessions are stored
//! under the SHA-256 of their cookie, recovery codes as SHA-256 hashes, and TOTP secrets,
//! enrolments in progress and messages are sealed by the runtime's identity key.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::identity::Sealed;
use super::{Store, StoreError};

/// What proves who a staff user is.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The user id (from the users file).
    pub user: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// The TOTP secret once enrolled: sealed as stored, opened (base32) by the runtime.
    pub totp_secret: Option<String>,
    /// The last TOTP step accepted.
    pub totp_last_step: Option<i64>,
    /// SHA-256 hashes of the unused recovery codes.
    pub recovery: Vec<String>,
    /// Consecutive failed sign-ins.
    pub failures: i64,
    /// The last failure (ms).
    pub last_failure: Option<i64>,
}

fn credential(r: &AnyRow) -> Result<Credential, sqlx::Error> {
    let recovery: String = r.try_get("recovery")?;
    Ok(Credential {
        user: r.try_get("user_id")?,
        password_hash: r.try_get("password_hash")?,
        totp_secret: r.try_get("totp_secret")?,
        totp_last_step: r.try_get("totp_last_step")?,
        recovery: serde_json::from_str(&recovery).unwrap_or_default(),
        failures: r.try_get("failures")?,
        last_failure: r.try_get("last_failure")?,
    })
}

/// How far a session has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStage {
    /// The password was right; the second factor is due.
    Password,
    /// The second factor is being enrolled (the secret is on the session).
    Enrol,
    /// Signed in.
    Active,
}

impl SessionStage {
    fn as_str(self) -> &'static str {
        match self {
            SessionStage::Password => "password",
            SessionStage::Enrol => "enrol",
            SessionStage::Active => "active",
        }
    }
    fn parse(s: &str) -> SessionStage {
        match s {
            "active" => SessionStage::Active,
            "enrol" => SessionStage::Enrol,
            _ => SessionStage::Password,
        }
    }
}

/// A stored session.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// SHA-256 of the cookie (hex): the key.
    pub id_hash: String,
    /// Whose.
    pub user: String,
    /// How far sign-in has got.
    pub stage: SessionStage,
    /// Created (ms).
    pub created_at: i64,
    /// Last request (ms).
    pub last_seen: i64,
    /// Revoked (ms): signed out, expired or revoked by an administrator.
    pub revoked_at: Option<i64>,
    /// The enrolment in progress during [`SessionStage::Enrol`]: sealed as stored,
    /// opened by the runtime.
    pub enrol_secret: Option<String>,
}

fn session(r: &AnyRow) -> Result<SessionRow, sqlx::Error> {
    let stage: String = r.try_get("stage")?;
    Ok(SessionRow {
        id_hash: r.try_get("id_hash")?,
        user: r.try_get("user_id")?,
        stage: SessionStage::parse(&stage),
        created_at: r.try_get("created_at")?,
        last_seen: r.try_get("last_seen")?,
        revoked_at: r.try_get("revoked_at")?,
        enrol_secret: r.try_get("enrol_secret")?,
    })
}

/// A sealed message on a case.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// The message id.
    pub id: String,
    /// The case.
    pub instance_id: String,
    /// The staff user who wrote it; `None` for the whistleblower.
    pub author: Option<String>,
    /// The sealed text.
    pub sealed: Sealed,
    /// Written (ms).
    pub created_at: i64,
}

fn message(r: &AnyRow) -> Result<MessageRow, sqlx::Error> {
    Ok(MessageRow {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        author: r.try_get("author")?,
        sealed: Sealed {
            nonce: r.try_get("nonce")?,
            ciphertext: r.try_get("ciphertext")?,
            key_id: r.try_get("key_id")?,
        },
        created_at: r.try_get("created_at")?,
    })
}

const CREDENTIAL_COLUMNS: &str =
    "user_id, password_hash, totp_secret, totp_last_step, recovery, failures, last_failure";
const SESSION_COLUMNS: &str =
    "id_hash, user_id, stage, created_at, last_seen, revoked_at, enrol_secret";

impl Store {
    /// A user's credential.
    pub async fn credential(&self, user: &str) -> Result<Option<Credential>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = $1"
        ))
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(credential).transpose()?)
    }

    /// Sets a user's password; `reset_second_factor` also removes the TOTP enrolment and
    /// recovery codes. Clears the failure count and revokes the user's sessions.
    pub async fn set_password(
        &self,
        user: &str,
        hash: &str,
        reset_second_factor: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(if reset_second_factor {
            "UPDATE credentials SET password_hash = $1, totp_secret = NULL, totp_last_step = NULL, recovery = '[]', failures = 0, last_failure = NULL, updated_at = $2 WHERE user_id = $3"
        } else {
            "UPDATE credentials SET password_hash = $1, failures = 0, last_failure = NULL, updated_at = $2 WHERE user_id = $3"
        })
        .bind(hash)
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO credentials (user_id, password_hash, totp_secret, totp_last_step, recovery, failures, last_failure, updated_at) VALUES ($1, $2, NULL, NULL, '[]', 0, NULL, $3)")
                .bind(user)
                .bind(hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts a failed sign-in; returns the count.
    pub async fn sign_in_failed(&self, user: &str, now: i64) -> Result<i64, StoreError> {
        let row = sqlx::query("UPDATE credentials SET failures = failures + 1, last_failure = $1 WHERE user_id = $2 RETURNING failures")
            .bind(now)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0))
    }

    /// Clears the failure count after a complete sign-in.
    pub async fn sign_in_succeeded(&self, user: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE credentials SET failures = 0, last_failure = NULL WHERE user_id = $1")
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores an enrolled second factor and its recovery code hashes.
    pub async fn enrol_totp(
        &self,
        user: &str,
        secret: &str,
        step: i64,
        recovery: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE credentials SET totp_secret = $1, totp_last_step = $2, recovery = $3, updated_at = $4 WHERE user_id = $5")
            .bind(secret)
            .bind(step)
            .bind(serde_json::to_string(recovery).expect("strings serialise"))
            .bind(now)
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records `step` as the last TOTP step used, unless a step at or after it was used
    /// already (a replay); true when recorded.
    pub async fn use_totp_step(&self, user: &str, step: i64) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE credentials SET totp_last_step = $1 WHERE user_id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)")
            .bind(step)
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Removes one recovery code hash; true when it was there (each code works once).
    pub async fn use_recovery_code(&self, user: &str, hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT recovery FROM credentials WHERE user_id = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let text: String = row.try_get(0)?;
        let mut codes: Vec<String> = serde_json::from_str(&text).unwrap_or_default();
        let before = codes.len();
        codes.retain(|c| c != hash);
        if codes.len() == before {
            return Ok(false);
        }
        sqlx::query("UPDATE credentials SET recovery = $1 WHERE user_id = $2")
            .bind(serde_json::to_string(&codes).expect("strings serialise"))
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores a new session.
    pub async fn create_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, NULL, $6)"
        ))
        .bind(&s.id_hash)
        .bind(&s.user)
        .bind(s.stage.as_str())
        .bind(s.created_at)
        .bind(s.last_seen)
        .bind(&s.enrol_secret)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session by the hash of its cookie.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1"
        ))
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(session).transpose()?)
    }

    /// Records a request on a live session (at most one write per `granularity` ms).
    pub async fn touch_session(
        &self,
        id_hash: &str,
        now: i64,
        granularity: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2 AND revoked_at IS NULL AND last_seen < $3")
            .bind(now)
            .bind(id_hash)
            .bind(now - granularity)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a session to `stage`, ending any enrolment in progress on it.
    pub async fn set_session_stage(
        &self,
        id_hash: &str,
        stage: SessionStage,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET stage = $1, enrol_secret = NULL WHERE id_hash = $2 AND revoked_at IS NULL")
            .bind(stage.as_str())
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every stored TOTP secret with its user (to seal those an earlier version kept in
    /// clear).
    pub async fn clear_totp_secrets(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, totp_secret FROM credentials WHERE totp_secret IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("user_id")?, r.try_get("totp_secret")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Replaces `user`'s TOTP secret `was` by `sealed`; false when it changed meanwhile.
    pub async fn reseal_totp_secret(
        &self,
        user: &str,
        was: &str,
        sealed: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE credentials SET totp_secret = $1 WHERE user_id = $2 AND totp_secret = $3",
        )
        .bind(sealed)
        .bind(user)
        .bind(was)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Ends a session; true when it was live.
    pub async fn revoke_session(&self, id_hash: &str, now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id_hash)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Live sessions (not revoked, seen since `since`), newest first.
    pub async fn live_sessions(&self, since: i64) -> Result<Vec<SessionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE revoked_at IS NULL AND last_seen >= $1 ORDER BY created_at DESC LIMIT 1000"
        ))
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| session(r).map_err(StoreError::from))
            .collect()
    }

    /// Stores a sealed message on a case.
    pub async fn add_message(&self, m: &MessageRow) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO case_messages (id, instance_id, author, nonce, ciphertext, key_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&m.id)
            .bind(&m.instance_id)
            .bind(&m.author)
            .bind(&m.sealed.nonce)
            .bind(&m.sealed.ciphertext)
            .bind(&m.sealed.key_id)
            .bind(m.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A case's messages, oldest first.
    pub async fn messages(&self, instance: &str) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query("SELECT id, instance_id, author, nonce, ciphertext, key_id, created_at FROM case_messages WHERE instance_id = $1 ORDER BY created_at, id")
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| message(r).map_err(StoreError::from))
            .collect()
    }

    /// The next value of counter `name` (1 first), unique across daemons.
    pub async fn next_counter(&self, name: &str) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("INSERT INTO counters (name, value) VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        let v: i64 = row.try_get(0)?;
        tx.commit().await?;
        Ok(v)
    }
}

impl Store {
    /// The outbox rows of one instance, oldest first (at most 500).
    pub async fn mail_for_instance(
        &self,
        instance: &str,
    ) -> Result<Vec<super::MailRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM outbox WHERE instance_id = $1 ORDER BY created_at, id LIMIT 500",
            super::MAIL_COLUMNS
        );
        let rows = sqlx::query(&sql)
            .bind(instance)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| super::mail_record(r).map_err(StoreError::from))
            .collect()
    }
}

impl Store {
    /// The case numbers of `instances` (those that have one), in one query per 500.
    pub async fn case_numbers(
        &self,
        instances: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in instances.chunks(500) {
            let sql = format!(
                "SELECT id, case_number FROM instances WHERE case_number IS NOT NULL AND id IN ({})",
                super::params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.insert(r.try_get("id")?, r.try_get("case_number")?);
            }
        }
        Ok(out)
    }

    /// The case number of an instance, when its input has one.
    pub async fn case_number(&self, instance: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT case_number FROM instances WHERE id = $1")
            .bind(instance)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()?
            .flatten())
    }

    /// Whether a receipt code opens this instance (it came in through intake).
    pub async fn has_receipt(&self, instance: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM receipts WHERE instance_id = $1")
            .bind(instance)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}
