//! Intake rows: receipt-code hashes and sealed reporter identities, kept apart from cases.
//!
//! The store never sees an identity in clear: it keeps what the runtime's `identity` module sealed.
//! An intake's instance tree, its receipt and its sealed identity are inserted in one
//! transaction, so a case never runs without them (a `to: reporter` notification right
//! at the start finds the identity).

use serde_json::Value;
use sqlx::Row;

use super::{NewInstance, Store, StoreError, insert_instances};

/// A sealed identity with what may be known about it without the key.
#[derive(Debug, Clone)]
pub struct StoredIdentity {
    /// The instance it belongs to (the associated data of the seal).
    pub instance_id: String,
    /// The sealed record.
    pub sealed: Sealed,
    /// Whether it holds an email address the reporter agreed to be written to.
    pub has_email: bool,
}

impl Store {
    /// Creates an intake's instance tree with its receipt hash and, for a real-name
    /// report, its sealed identity, in one transaction.
    pub async fn start_intake(
        &self,
        tree: &[NewInstance],
        receipt: (&str, &str),
        identity: Option<&StoredIdentity>,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(root) = tree.first() else {
            return Ok(());
        };
        let mut tx = self.begin().await?;
        let rows: Vec<&NewInstance> = tree.iter().collect();
        insert_instances(&mut tx, &rows, now).await?;
        sqlx::query("INSERT INTO receipts (lookup, instance_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(receipt.0)
            .bind(&root.id)
            .bind(receipt.1)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(i) = identity {
            sqlx::query("INSERT INTO identities (instance_id, nonce, ciphertext, key_id, has_email, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&i.instance_id)
                .bind(&i.sealed.nonce)
                .bind(&i.sealed.ciphertext)
                .bind(&i.sealed.key_id)
                .bind(i64::from(i.has_email))
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether a receipt lookup id is taken (a new code is drawn then).
    pub async fn receipt_exists(&self, lookup: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM receipts WHERE lookup = $1")
                .bind(lookup)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// The instance and secret hash of a receipt lookup id.
    pub async fn receipt(&self, lookup: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT instance_id, secret_hash FROM receipts WHERE lookup = $1")
            .bind(lookup)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("instance_id")?, r.try_get("secret_hash")?)),
            None => None,
        })
    }

    /// The sealed identity of the report behind `instance`: its own, or that of the
    /// nearest ancestor that has one (a clarification started by a complaint reaches
    /// the complaint's reporter). `None` for an anonymous report.
    pub async fn identity_for(&self, instance: &str) -> Result<Option<StoredIdentity>, StoreError> {
        let mut id = instance.to_owned();
        // Deeper than any chain of starts the engine creates (it caps nesting at 16).
        for _ in 0..32 {
            let row = sqlx::query(
                "SELECT nonce, ciphertext, key_id, has_email FROM identities WHERE instance_id = $1",
            )
            .bind(&id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                return Ok(Some(StoredIdentity {
                    instance_id: id,
                    sealed: Sealed {
                        nonce: r.try_get("nonce")?,
                        ciphertext: r.try_get("ciphertext")?,
                        key_id: r.try_get("key_id")?,
                    },
                    has_email: r.try_get::<i64, _>("has_email")? != 0,
                }));
            }
            let parent = sqlx::query("SELECT parent_id FROM instances WHERE id = $1")
                .bind(&id)
                .fetch_optional(&self.pool)
                .await?
                .and_then(|r| r.try_get::<Option<String>, _>("parent_id").ok().flatten());
            match parent {
                Some(p) => id = p,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Records a use of a reporter's identity in the hash-chained audit log: who, when,
    /// why, for which instance — never identity data. Every decryption goes through here,
    /// and a use that cannot be recorded does not happen (the caller returns the error).
    pub async fn record_identity_use(
        &self,
        instance: &str,
        actor: &str,
        kind: &str,
        detail: &Value,
        now: i64,
    ) -> Result<(), StoreError> {
        self.audit(&super::AuditEvent {
            at: now,
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            instance_id: Some(instance.to_owned()),
            detail: detail.clone(),
        })
        .await
    }
}

/// A sealed identity as stored (base64 text, so both backends store it the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The 24-byte nonce.
    pub nonce: String,
    /// Ciphertext with its 16-byte tag.
    pub ciphertext: String,
    /// The fingerprint of the key that sealed it.
    pub key_id: String,
}
