//! The append-only audit: the security audit log, the hash chains over it and over each
//! instance's history, and their verification.
//!
//! Each row carries `prev_hash` and `hash = sha256(prev_hash "\n" canonical-row)`, where
//! the canonical row is a JSON array of its content fields. The last position and hash
//! of every chain is kept in `chain_heads`, written in the same transaction as the rows,
//! so deleting rows at the end of a chain is detected like deleting them in the middle.
//! The audit log is one global chain (security events are rare); the history has one
//! chain per instance, so the engine's commits never wait on each other for a chain.

use std::collections::HashMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Backend, NewHistory, Store, StoreError, params, pow2_chunks};

/// A security event for the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// When (ms).
    pub at: i64,
    /// What happened, e.g. `token.created`, `auth.refused`, `identity.read`.
    pub kind: String,
    /// Who did it (a user id, `anonymous`, or `host:NAME` for commands on the host).
    pub actor: String,
    /// The instance concerned, if any.
    pub instance_id: Option<String>,
    /// Details (never secrets or confidential data).
    pub detail: Value,
}

/// An audit log row as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    /// Position in the chain (1, 2, …).
    pub seq: i64,
    /// When (ms).
    pub at: i64,
    /// What.
    pub kind: String,
    /// Who.
    pub actor: String,
    /// The instance concerned.
    pub instance_id: Option<String>,
    /// Details.
    pub detail: Value,
    /// This row's hash.
    pub hash: String,
}

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Breach {
    /// `history` or `audit`.
    pub table: &'static str,
    /// The row id (`history.id` or `audit.seq`) when a row is at fault; none for rows
    /// that are gone.
    pub id: Option<i64>,
    /// The instance, for history.
    pub instance_id: Option<String>,
    /// The position in the chain.
    pub position: i64,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.table)?;
        if let Some(id) = self.id {
            write!(f, " row {id}")?;
        }
        match &self.instance_id {
            Some(i) => write!(f, " (instance {i}, position {})", self.position)?,
            None => write!(f, " (position {})", self.position)?,
        }
        write!(f, ": {}", self.problem)
    }
}

/// What `verify` checked.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verification {
    /// History rows checked.
    pub history_rows: u64,
    /// Instance chains checked.
    pub instances: u64,
    /// Audit rows checked.
    pub audit_rows: u64,
    /// The audit chain's head hash (record it elsewhere to anchor the log).
    pub audit_head: Option<String>,
    /// Everything wrong.
    pub breaches: Vec<Breach>,
}

fn link(prev: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[allow(clippy::too_many_arguments)]
fn history_canonical(
    instance: &str,
    seq: i64,
    at: i64,
    actor: &str,
    kind: &str,
    step: Option<&str>,
    detail: &str,
) -> String {
    json!([instance, seq, at, actor, kind, step, detail]).to_string()
}

fn audit_canonical(
    seq: i64,
    at: i64,
    kind: &str,
    actor: &str,
    instance: Option<&str>,
    detail: &str,
) -> String {
    json!([seq, at, kind, actor, instance, detail]).to_string()
}

fn history_chain(instance: &str) -> String {
    format!("history:{instance}")
}

/// Appends one event to the audit chain inside `tx`.
pub(super) async fn append_audit(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    // The head row is the chain's lock: PostgreSQL locks it here, SQLite's write
    // transaction (BEGIN IMMEDIATE) already excludes other writers.
    let lock = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    };
    let head = sqlx::query(&format!(
        "SELECT seq, hash FROM chain_heads WHERE chain = 'audit'{lock}"
    ))
    .fetch_one(&mut **tx)
    .await?;
    let seq: i64 = head.try_get::<i64, _>("seq")? + 1;
    let prev: String = head.try_get("hash")?;
    let detail = event.detail.to_string();
    let hash = link(
        &prev,
        &audit_canonical(
            seq,
            event.at,
            &event.kind,
            &event.actor,
            event.instance_id.as_deref(),
            &detail,
        ),
    );
    sqlx::query("INSERT INTO audit (seq, at, kind, actor, instance_id, detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(seq)
        .bind(event.at)
        .bind(&event.kind)
        .bind(&event.actor)
        .bind(&event.instance_id)
        .bind(&detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE chain_heads SET seq = $1, hash = $2 WHERE chain = 'audit'")
        .bind(seq)
        .bind(&hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The chain fields of one history row about to be inserted.
pub(super) struct Chained {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// Computes the chain fields of `rows` (in order, `(instance, row)`) at time `now`, and
/// moves each instance's chain head, inside the commit's transaction. A concurrent
/// commit for the same instance cannot slip in: the instance's version check (and the
/// unique `(instance_id, seq)` index) rolls one of them back.
pub(super) async fn chain_history(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rows: &[(&str, &NewHistory)],
    now: i64,
) -> Result<Vec<Chained>, StoreError> {
    let mut heads: HashMap<String, (i64, String)> = HashMap::new();
    let mut chains: Vec<String> = rows.iter().map(|(i, _)| history_chain(i)).collect();
    chains.sort_unstable();
    chains.dedup();
    for chunk in chains.chunks(500) {
        let sql = format!(
            "SELECT chain, seq, hash FROM chain_heads WHERE chain IN ({})",
            params(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for c in chunk {
            q = q.bind(c);
        }
        for r in q.fetch_all(&mut **tx).await? {
            heads.insert(r.try_get("chain")?, (r.try_get("seq")?, r.try_get("hash")?));
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for (instance, h) in rows {
        let head = heads
            .entry(history_chain(instance))
            .or_insert_with(|| (0, String::new()));
        let seq = head.0 + 1;
        let hash = link(
            &head.1,
            &history_canonical(
                instance,
                seq,
                now,
                &h.actor,
                &h.kind,
                h.step.as_deref(),
                &h.detail,
            ),
        );
        out.push(Chained {
            seq,
            prev_hash: std::mem::replace(&mut head.1, hash.clone()),
            hash,
        });
        head.0 = seq;
    }
    let mut moved: Vec<(&String, &(i64, String))> = heads.iter().collect();
    moved.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for chunk in pow2_chunks(&moved, 256) {
        let values = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO chain_heads (chain, seq, hash) VALUES {values} \
             ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
        );
        let mut q = sqlx::query(&sql);
        for (chain, (seq, hash)) in chunk {
            q = q.bind(*chain).bind(*seq).bind(hash);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(out)
}

/// Walks one chain's rows in position order, reporting every break.
struct Walk {
    table: &'static str,
    instance: Option<String>,
    expected: i64,
    prev: String,
    prev_id: Option<i64>,
    rows: u64,
}

impl Walk {
    fn new(table: &'static str, instance: Option<String>) -> Walk {
        Walk {
            table,
            instance,
            expected: 1,
            prev: String::new(),
            prev_id: None,
            rows: 0,
        }
    }

    fn breach(&self, id: Option<i64>, position: i64, problem: String) -> Breach {
        Breach {
            table: self.table,
            id,
            instance_id: self.instance.clone(),
            position,
            problem,
        }
    }

    /// One row: its id, position, stored links and recomputed canonical form.
    fn row(
        &mut self,
        id: i64,
        seq: Option<i64>,
        prev_hash: Option<&str>,
        hash: Option<&str>,
        canonical: impl FnOnce(i64) -> String,
        out: &mut Vec<Breach>,
    ) {
        self.rows += 1;
        let (Some(seq), Some(prev_hash), Some(hash)) = (seq, prev_hash, hash) else {
            out.push(
                self.breach(
                    Some(id),
                    self.expected,
                    "the row has no chain fields (written outside the chain, or they were erased)"
                        .into(),
                ),
            );
            return;
        };
        if seq > self.expected {
            let gone = if seq - self.expected == 1 {
                format!("position {} is missing (row deleted)", self.expected)
            } else {
                format!(
                    "positions {}–{} are missing (rows deleted)",
                    self.expected,
                    seq - 1
                )
            };
            out.push(self.breach(None, self.expected, gone));
        } else if seq < self.expected {
            out.push(self.breach(
                Some(id),
                seq,
                format!("position {seq} appears again (row inserted or copied)"),
            ));
        }
        if prev_hash != self.prev && seq == self.expected {
            let before = self
                .prev_id
                .map_or_else(String::new, |p| format!(" (row {p})"));
            out.push(self.breach(
                Some(id),
                seq,
                format!("its link does not match the previous row{before}: that row was altered and re-hashed, or replaced"),
            ));
        }
        if link(prev_hash, &canonical(seq)) != hash {
            out.push(self.breach(
                Some(id),
                seq,
                "altered: its content does not match its hash".into(),
            ));
        }
        self.prev = hash.to_owned();
        self.prev_id = Some(id);
        self.expected = seq.max(self.expected - 1) + 1;
    }

    /// The end of the chain against its head row.
    fn end(&self, head: Option<&(i64, String)>, out: &mut Vec<Breach>) {
        let last = self.expected - 1;
        match head {
            None if self.rows > 0 => out.push(self.breach(
                None,
                last,
                "the chain's head row is missing (deleted)".into(),
            )),
            None => {}
            Some((seq, _)) if *seq > last => out.push(self.breach(
                None,
                last + 1,
                if *seq == last + 1 {
                    format!("position {seq} at the end is missing (row deleted)")
                } else {
                    format!(
                        "positions {}–{seq} at the end are missing (rows deleted)",
                        last + 1
                    )
                },
            )),
            Some((seq, _)) if *seq < last => out.push(self.breach(
                None,
                *seq + 1,
                format!("rows after the recorded end (position {seq}) were added"),
            )),
            Some((_, hash)) if *hash != self.prev => out.push(self.breach(
                self.prev_id,
                last,
                "the last row does not match the chain's head (altered and re-hashed, or replaced)"
                    .into(),
            )),
            Some(_) => {}
        }
    }
}

impl Store {
    /// Appends a security event to the audit log (its own transaction).
    pub async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_audit(&mut tx, self.backend, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit rows after position `after`, oldest first.
    pub async fn audit_log(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query("SELECT seq, at, kind, actor, instance_id, detail, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit.clamp(1, 1000) as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(AuditRecord {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    instance_id: r.try_get("instance_id")?,
                    detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
                    hash: r.try_get("hash")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Walks the chains (the audit log and every instance's history, or only the
    /// history of `instance`) and reports every altered, deleted or added row.
    pub async fn verify(&self, instance: Option<&str>) -> Result<Verification, StoreError> {
        let mut v = Verification::default();
        let heads: HashMap<String, (i64, String)> = match instance {
            Some(i) => {
                sqlx::query("SELECT chain, seq, hash FROM chain_heads WHERE chain = $1")
                    .bind(history_chain(i))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT chain, seq, hash FROM chain_heads")
                    .fetch_all(&self.pool)
                    .await?
            }
        }
        .iter()
        .map(|r| Ok((r.try_get("chain")?, (r.try_get("seq")?, r.try_get("hash")?))))
        .collect::<Result<_, sqlx::Error>>()?;
        if instance.is_none() {
            self.verify_audit(heads.get("audit"), &mut v).await?;
        }
        self.verify_history(instance, &heads, &mut v).await?;
        Ok(v)
    }

    async fn verify_audit(
        &self,
        head: Option<&(i64, String)>,
        v: &mut Verification,
    ) -> Result<(), StoreError> {
        let mut walk = Walk::new("audit", None);
        let mut after = i64::MIN;
        loop {
            let rows = sqlx::query("SELECT seq, at, kind, actor, instance_id, detail, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT 5000")
                .bind(after)
                .fetch_all(&self.pool)
                .await?;
            for r in &rows {
                let seq: i64 = r.try_get("seq")?;
                let (at, kind, actor, inst, detail): (i64, String, String, Option<String>, String) = (
                    r.try_get("at")?,
                    r.try_get("kind")?,
                    r.try_get("actor")?,
                    r.try_get("instance_id")?,
                    r.try_get("detail")?,
                );
                let prev: String = r.try_get("prev_hash")?;
                let hash: String = r.try_get("hash")?;
                walk.row(
                    seq,
                    Some(seq),
                    Some(&prev),
                    Some(&hash),
                    |s| audit_canonical(s, at, &kind, &actor, inst.as_deref(), &detail),
                    &mut v.breaches,
                );
                after = seq;
            }
            if rows.len() < 5000 {
                break;
            }
        }
        match head {
            Some(h) => walk.end(Some(h), &mut v.breaches),
            None => v.breaches.push(walk.breach(
                None,
                walk.expected - 1,
                "the audit chain's head row is missing (deleted)".into(),
            )),
        }
        v.audit_rows = walk.rows;
        v.audit_head = head.map(|h| h.1.clone());
        Ok(())
    }

    async fn verify_history(
        &self,
        only: Option<&str>,
        heads: &HashMap<String, (i64, String)>,
        v: &mut Verification,
    ) -> Result<(), StoreError> {
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut walk: Option<Walk> = None;
        let mut after = (String::new(), i64::MIN);
        let finish = |w: &Walk, v: &mut Verification| {
            let instance = w.instance.clone().unwrap_or_default();
            w.end(heads.get(&history_chain(&instance)), &mut v.breaches);
            v.history_rows += w.rows;
            v.instances += 1;
        };
        loop {
            let rows = match only {
                Some(i) => sqlx::query("SELECT id, instance_id, at, actor, kind, step, detail, seq, prev_hash, hash FROM history \
                                        WHERE instance_id = $1 AND id > $2 ORDER BY id LIMIT 5000")
                    .bind(i)
                    .bind(after.1)
                    .fetch_all(&self.pool)
                    .await?,
                None => sqlx::query("SELECT id, instance_id, at, actor, kind, step, detail, seq, prev_hash, hash FROM history \
                                     WHERE instance_id > $1 OR (instance_id = $1 AND id > $2) ORDER BY instance_id, id LIMIT 5000")
                    .bind(&after.0)
                    .bind(after.1)
                    .fetch_all(&self.pool)
                    .await?,
            };
            for r in &rows {
                let id: i64 = r.try_get("id")?;
                let inst: String = r.try_get("instance_id")?;
                if walk.as_ref().and_then(|w| w.instance.as_deref()) != Some(inst.as_str()) {
                    if let Some(w) = walk.take() {
                        finish(&w, v);
                    }
                    seen.insert(inst.clone());
                    walk = Some(Walk::new("history", Some(inst.clone())));
                }
                let w = walk.as_mut().expect("walk");
                let (at, actor, kind, step, detail): (i64, String, String, Option<String>, String) = (
                    r.try_get("at")?,
                    r.try_get("actor")?,
                    r.try_get("kind")?,
                    r.try_get("step")?,
                    r.try_get("detail")?,
                );
                let prev: Option<String> = r.try_get("prev_hash")?;
                let hash: Option<String> = r.try_get("hash")?;
                w.row(
                    id,
                    r.try_get("seq")?,
                    prev.as_deref(),
                    hash.as_deref(),
                    |s| history_canonical(&inst, s, at, &actor, &kind, step.as_deref(), &detail),
                    &mut v.breaches,
                );
                after = (inst, id);
            }
            if rows.len() < 5000 {
                break;
            }
        }
        if let Some(w) = walk.take() {
            finish(&w, v);
        }
        // Chains whose every row is gone.
        let mut empty: Vec<(&String, &(i64, String))> = heads
            .iter()
            .filter(|(c, _)| {
                c.strip_prefix("history:")
                    .is_some_and(|i| !seen.contains(i))
            })
            .collect();
        empty.sort();
        for (chain, (seq, _)) in empty {
            if *seq > 0 {
                v.breaches.push(Breach {
                    table: "history",
                    id: None,
                    instance_id: chain.strip_prefix("history:").map(str::to_owned),
                    position: 1,
                    problem: format!("all {seq} rows of the chain are missing (deleted)"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<(i64, String, String, String)> {
        let mut prev = String::new();
        (1..=n)
            .map(|s| {
                let content = format!("row {s}");
                let h = link(&prev, &format!("{s}{content}"));
                let row = (s, content, prev.clone(), h.clone());
                prev = h;
                row
            })
            .collect()
    }

    fn check(rows: &[(i64, String, String, String)], head: (i64, String)) -> Vec<Breach> {
        let mut out = Vec::new();
        let mut w = Walk::new("audit", None);
        for (s, content, prev, hash) in rows {
            w.row(
                *s,
                Some(*s),
                Some(prev),
                Some(hash),
                |p| format!("{p}{content}"),
                &mut out,
            );
        }
        w.end(Some(&head), &mut out);
        out
    }

    #[test]
    fn an_honest_chain_verifies() {
        let rows = chain(5);
        let head = (5, rows[4].3.clone());
        assert_eq!(check(&rows, head), vec![]);
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let rows = chain(5);
        let head = (5, rows[4].3.clone());
        // Altered content.
        let mut t = rows.clone();
        t[1].1 = "forged".into();
        let b = check(&t, head.clone());
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!((b[0].id, b[0].position), (Some(2), 2));
        assert!(b[0].problem.starts_with("altered"));
        // Altered and re-hashed: the next row's link breaks.
        let mut t = rows.clone();
        t[1].1 = "forged".into();
        t[1].3 = link(&t[1].2, "2forged");
        let b = check(&t, head.clone());
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].id, Some(3));
        assert!(
            b[0].problem.contains("previous row (row 2)"),
            "{}",
            b[0].problem
        );
        // A row deleted in the middle.
        let mut t = rows.clone();
        t.remove(2);
        let b = check(&t, head.clone());
        assert!(
            b.iter()
                .any(|x| x.id.is_none() && x.position == 3 && x.problem.contains("missing")),
            "{b:?}"
        );
        // The tail deleted: only the head row knows.
        let t = rows[..3].to_vec();
        let b = check(&t, head.clone());
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(
            b[0].problem
                .contains("positions 4–5 at the end are missing"),
            "{}",
            b[0].problem
        );
    }
}
