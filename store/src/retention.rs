//! Retention of closed cases in the store: finding cases that ended, their warning before
//! expiry, holds, and deleting a case with every row it left, recorded in the audit log.
//!
//! A case is a root instance (no parent) with every instance started from it, however
//! deep. What to do with a case is decided by `crate::retention`; this module only reads
//! the facts and carries out a decision in one transaction, re-checking in it what the
//! decision relied on.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::append_audit;
use super::{AuditEvent, Backend, NewMail, Store, StoreError, insert_mail, params};

/// Pages through the cases whose root instance ended at or before a time, in the order
/// they ended, so a long list is never held at once.
#[derive(Debug, Clone)]
pub struct Cases {
    ended_before: i64,
    after: (i64, String),
}

impl Cases {
    /// Cases whose root ended at or before `ended_before` (ms).
    pub fn ended_before(ended_before: i64) -> Cases {
        Cases {
            ended_before,
            after: (i64::MIN, String::new()),
        }
    }

    /// The facts of the next cases; empty when there are no more.
    pub async fn next_page(&mut self, store: &Store) -> Result<Vec<CaseFacts>, StoreError> {
        loop {
            let rows = sqlx::query(
                "SELECT id, ended_at FROM instances \
                 WHERE parent_id IS NULL AND ended_at IS NOT NULL AND ended_at <= $1 \
                 AND (ended_at > $2 OR (ended_at = $2 AND id > $3)) \
                 ORDER BY ended_at, id LIMIT 200",
            )
            .bind(self.ended_before)
            .bind(self.after.0)
            .bind(&self.after.1)
            .fetch_all(&store.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: String = r.try_get("id")?;
                self.after = (r.try_get("ended_at")?, id.clone());
                // A root deleted meanwhile (by another daemon) is simply not listed.
                out.extend(store.case_facts(&id).await?);
            }
            // A page whose roots all vanished is skipped, not taken for the end.
            if !out.is_empty() || rows.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// One instance of a case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseMember {
    /// The instance.
    pub id: String,
    /// Its workflow.
    pub workflow: String,
    /// When it ended (ms); none while it runs.
    pub ended_at: Option<i64>,
}

/// A hold on a case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    /// Why.
    pub reason: String,
    /// Who put it.
    pub by: String,
    /// When (ms).
    pub at: i64,
}

/// What the store knows about a case, for the retention decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    /// The root instance.
    pub root: String,
    /// The root's workflow (its retention period applies to the case).
    pub workflow: String,
    /// When the root started (ms).
    pub started_at: i64,
    /// The root and every instance started from it, root first.
    pub members: Vec<CaseMember>,
    /// Messages of the case still waiting to be sent.
    pub queued_mail: i64,
    /// When the expiry warning was queued.
    pub warned_at: Option<i64>,
    /// The expiry the warning announced (ms).
    pub announced_expiry: Option<i64>,
    /// The warning's delivery status (`queued`, `sent`, `dead`), once queued.
    pub warning_status: Option<String>,
    /// The hold, if any.
    pub hold: Option<Hold>,
}

impl CaseFacts {
    /// When the last instance of the case ended; none while any instance runs.
    pub fn ended_at(&self) -> Option<i64> {
        self.members
            .iter()
            .map(|m| m.ended_at)
            .try_fold(i64::MIN, |acc, e| e.map(|e| acc.max(e)))
    }
}

/// How many rows a deletion removed, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Deleted {
    /// Instances.
    pub instances: u64,
    /// History rows.
    pub history: u64,
    /// Tasks.
    pub tasks: u64,
    /// Outbox rows.
    pub outbox: u64,
    /// Pending events and timers.
    pub events: u64,
    /// Receipt codes.
    pub receipts: u64,
    /// Sealed identities.
    pub identities: u64,
    /// Messages between the whistleblower and the office.
    pub messages: u64,
}

/// Why a case was not deleted after all (it changed after the decision was taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotDeleted {
    /// The case is gone already (another daemon deleted it).
    Gone,
    /// The case changed since it was read: different instances, one running again, new
    /// mail, a hold, or the warning not delivered.
    Changed,
}

const TREE: &str = "WITH RECURSIVE tree(id) AS (SELECT CAST($1 AS TEXT) UNION ALL \
                    SELECT i.id FROM instances i JOIN tree t ON i.parent_id = t.id) \
                    SELECT i.id, i.workflow, i.ended_at, i.parent_id, i.created_at FROM instances i JOIN tree t ON i.id = t.id";

fn member(r: &AnyRow) -> Result<CaseMember, sqlx::Error> {
    Ok(CaseMember {
        id: r.try_get("id")?,
        workflow: r.try_get("workflow")?,
        ended_at: r.try_get("ended_at")?,
    })
}

impl Store {
    /// The facts of the case rooted at `root`; none when there is no such root instance.
    pub async fn case_facts(&self, root: &str) -> Result<Option<CaseFacts>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_case(&mut conn, root).await
    }

    /// Queues the expiry warning of a case with its audit record, once per announced
    /// expiry: returns false (and queues nothing) when the case was warned already of
    /// this expiry or a later one, or no longer exists.
    pub async fn warn_case(
        &self,
        root: &str,
        expires_at: i64,
        mail: &NewMail,
        event: &AuditEvent,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        // The case may have been deleted by another daemon since its facts were read:
        // a warning is queued only for a case that still exists, under its root's lock.
        if !lock_root(&mut tx, self.backend, root).await? {
            return Ok(false);
        }
        let done = sqlx::query(
            "INSERT INTO retention (instance_id, warned_at, expires_at, warning_mail) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (instance_id) DO UPDATE SET warned_at = $2, expires_at = $3, warning_mail = $4 \
             WHERE retention.warned_at IS NULL OR retention.expires_at < $3",
        )
        .bind(root)
        .bind(now)
        .bind(expires_at)
        .bind(&mail.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        insert_mail(&mut tx, mail, now).await?;
        append_audit(&mut tx, self.backend, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes the case rooted at `root` if it is still exactly `expected` (same
    /// instances, all ended, no queued mail, no hold, the warning delivered), recording
    /// `event` with the counts of deleted rows added to its detail.
    pub async fn delete_case(
        &self,
        expected: &CaseFacts,
        mut event: AuditEvent,
    ) -> Result<Result<Deleted, NotDeleted>, StoreError> {
        let mut tx = self.begin().await?;
        if !lock_root(&mut tx, self.backend, &expected.root).await? {
            return Ok(Err(NotDeleted::Gone));
        }
        let Some(now) = read_case(&mut tx, &expected.root).await? else {
            return Ok(Err(NotDeleted::Gone));
        };
        let unchanged = now.members == expected.members
            && now.ended_at().is_some()
            && now.queued_mail == 0
            && now.hold.is_none()
            && now.warning_status.as_deref() == Some("sent");
        if !unchanged {
            return Ok(Err(NotDeleted::Changed));
        }
        let ids: Vec<&str> = now.members.iter().map(|m| m.id.as_str()).collect();
        let mut deleted = Deleted::default();
        for chunk in ids.chunks(200) {
            let list = params(1, chunk.len());
            // Every table holding rows of the case; `instances` last.
            let counts: [(&str, &str, Option<&mut u64>); 10] = [
                ("history", "instance_id", Some(&mut deleted.history)),
                ("tasks", "instance_id", Some(&mut deleted.tasks)),
                ("outbox", "instance_id", Some(&mut deleted.outbox)),
                ("events", "instance_id", Some(&mut deleted.events)),
                ("subscriptions", "instance_id", None),
                ("receipts", "instance_id", Some(&mut deleted.receipts)),
                ("identities", "instance_id", Some(&mut deleted.identities)),
                ("case_messages", "instance_id", Some(&mut deleted.messages)),
                ("retention", "instance_id", None),
                ("instances", "id", Some(&mut deleted.instances)),
            ];
            for (table, column, count) in counts {
                let sql = format!("DELETE FROM {table} WHERE {column} IN ({list})");
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                let n = q.execute(&mut *tx).await?.rows_affected();
                if let Some(count) = count {
                    *count += n;
                }
            }
        }
        // The history chains go with their rows; the audit record below keeps the case's
        // instance ids.
        for chunk in ids.chunks(200) {
            let sql = format!(
                "DELETE FROM chain_heads WHERE chain IN ({})",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(format!("history:{id}"));
            }
            q.execute(&mut *tx).await?;
        }
        if let Value::Object(detail) = &mut event.detail {
            detail.insert("deleted".into(), json!(deleted));
        }
        append_audit(&mut tx, self.backend, &event).await?;
        tx.commit().await?;
        Ok(Ok(deleted))
    }

    /// Puts a hold on the case rooted at `root`, recorded in the audit log. Returns
    /// false when `root` is not a root instance.
    pub async fn hold_case(
        &self,
        root: &str,
        reason: &str,
        by: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        if !lock_root(&mut tx, self.backend, root).await? {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO retention (instance_id, hold_reason, held_by, held_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (instance_id) DO UPDATE SET hold_reason = $2, held_by = $3, held_at = $4",
        )
        .bind(root)
        .bind(reason)
        .bind(by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent {
            at: now,
            kind: "retention.held".into(),
            actor: by.into(),
            instance_id: Some(root.into()),
            detail: json!({ "reason": reason }),
        };
        append_audit(&mut tx, self.backend, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Releases the hold on the case rooted at `root`, recorded in the audit log.
    /// Returns false when the case had no hold.
    pub async fn release_case(&self, root: &str, by: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        lock_root(&mut tx, self.backend, root).await?;
        let done = sqlx::query(
            "UPDATE retention SET hold_reason = NULL, held_by = NULL, held_at = NULL \
             WHERE instance_id = $1 AND hold_reason IS NOT NULL",
        )
        .bind(root)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(false);
        }
        let event = AuditEvent {
            at: now,
            kind: "retention.released".into(),
            actor: by.into(),
            instance_id: Some(root.into()),
            detail: json!({}),
        };
        append_audit(&mut tx, self.backend, &event).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Locks the root instance's row for the rest of the transaction (PostgreSQL; SQLite's
/// transactions take the write lock up front), so that a hold, a deletion and another
/// daemon's deletion of one case run one after the other. False when there is no such
/// root instance (any more).
async fn lock_root(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    id: &str,
) -> Result<bool, StoreError> {
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    };
    Ok(sqlx::query(&format!(
        "SELECT 1 AS one FROM instances WHERE id = $1 AND parent_id IS NULL{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .is_some())
}

async fn read_case(
    conn: &mut sqlx::AnyConnection,
    root: &str,
) -> Result<Option<CaseFacts>, StoreError> {
    let rows = sqlx::query(TREE).bind(root).fetch_all(&mut *conn).await?;
    let mut members: Vec<CaseMember> = rows.iter().map(member).collect::<Result<_, _>>()?;
    let Some(pos) = members.iter().position(|m| m.id == root) else {
        return Ok(None);
    };
    let is_root = rows[pos]
        .try_get::<Option<String>, _>("parent_id")?
        .is_none();
    let started_at: i64 = rows[pos].try_get("created_at")?;
    if !is_root {
        return Ok(None);
    }
    let first = members.remove(pos);
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.insert(0, first);
    let workflow = members[0].workflow.clone();
    let mut queued_mail = 0;
    for chunk in members.chunks(200) {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM outbox WHERE status = 'queued' AND instance_id IN ({})",
            params(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for m in chunk {
            q = q.bind(&m.id);
        }
        queued_mail += q.fetch_one(&mut *conn).await?.try_get::<i64, _>("n")?;
    }
    let row = sqlx::query(
        "SELECT r.warned_at, r.expires_at, r.hold_reason, r.held_by, r.held_at, o.status AS warning_status \
         FROM retention r LEFT JOIN outbox o ON o.id = r.warning_mail WHERE r.instance_id = $1",
    )
    .bind(root)
    .fetch_optional(&mut *conn)
    .await?;
    let mut facts = CaseFacts {
        root: root.to_owned(),
        workflow,
        started_at,
        members,
        queued_mail,
        warned_at: None,
        announced_expiry: None,
        warning_status: None,
        hold: None,
    };
    if let Some(r) = row {
        facts.warned_at = r.try_get("warned_at")?;
        facts.announced_expiry = r.try_get("expires_at")?;
        facts.warning_status = r.try_get("warning_status")?;
        let reason: Option<String> = r.try_get("hold_reason")?;
        if let Some(reason) = reason {
            facts.hold = Some(Hold {
                reason,
                by: r
                    .try_get::<Option<String>, _>("held_by")?
                    .unwrap_or_default(),
                at: r.try_get::<Option<i64>, _>("held_at")?.unwrap_or_default(),
            });
        }
    }
    Ok(Some(facts))
}
