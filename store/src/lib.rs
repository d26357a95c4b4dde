//! The durable store on sqlx: SQLite (embedded default) or PostgreSQL, one code path.
//!
//! Every query here is written once in SQL both backends accept (`$N` parameters,
//! BIGINT milliseconds for times, TEXT JSON); the few differences (row locking,
//! transaction start, migrations) are chosen by [`Backend`]. A transition is one
//! transaction that holds the new state, its history, its timers, its child instances
//! and the events it sends to other instances.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use config::{Durability, StoreConfig};

mod config;
mod lists;
pub use lists::ListedInstance;
mod audit;
mod auth;
mod provisional;
pub mod schedules;

pub use audit::{AuditEvent, AuditRecord, Breach, Verification};
pub use auth::{IssuedToken, TOKEN_PREFIX, TokenRecord, hash_secret, parse_token, secret_matches};
mod tasks;
pub use tasks::{Closing, NewTask, TaskFilter, TaskOp, TaskRefused, TaskRow, TaskView};
pub mod identity;
pub mod retention;
pub mod web;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, embedded.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another worker changed the instance first; the batch was rolled back.
    #[error("instance {0} was changed by another worker")]
    Conflict(String),
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store URL is not usable.
    #[error("store url `{0}`: {1}")]
    Url(String, String),
}

/// The store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A new instance row, with its start event.
#[derive(Debug, Clone)]
pub struct NewInstance {
    /// The case number of its input (`input.case_number`), for finding it by number.
    pub case_number: Option<String>,
    /// Id.
    pub id: String,
    /// Workflow id.
    pub workflow: String,
    /// Pinned version.
    pub def_hash: String,
    /// Initial state (JSON).
    pub state: String,
    /// The instance that started it, and under which link.
    pub parent: Option<ParentLink>,
    /// The workflows of the instances above it in its chain of starts, root first.
    pub ancestors: Vec<String>,
    /// Not cancelled with its parent (`on_parent_cancel: abandon`).
    pub detached: bool,
    /// Idempotency key (roots only).
    pub idempotency_key: Option<String>,
    /// The start event's payload.
    pub start_event: String,
    /// Who started it.
    pub actor: String,
}

/// Where an instance hangs in its parent: the parent, the link name and which start of
/// the link it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentLink {
    /// The parent instance's id.
    pub instance: String,
    /// The link name (a `start` step's `as`, or the step id).
    pub link: String,
    /// Which start of the link.
    pub seq: i64,
}

/// The outcome of starting one tree of instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Created now.
    New(String),
    /// The idempotency key was used before, by this instance.
    Existing(String),
}

impl Started {
    /// The instance id either way.
    pub fn id(&self) -> &str {
        match self {
            Started::New(id) | Started::Existing(id) => id,
        }
    }
}

/// An instance claimed for advancing, with its due events.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Id.
    pub id: String,
    /// Pinned version.
    pub def_hash: String,
    /// State (JSON).
    pub state: String,
    /// Optimistic-concurrency version.
    pub version: i64,
    /// The instance that started it, and under which link.
    pub parent: Option<ParentLink>,
    /// The workflows above it in its chain of starts, root first.
    pub ancestors: Vec<String>,
    /// How many instances it has started over its life.
    pub children_started: i64,
    /// How many history rows it has.
    pub history_rows: i64,
    /// Due events, in order.
    pub events: Vec<PendingEvent>,
}

/// A due event.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    /// Row id.
    pub id: i64,
    /// The engine event (JSON).
    pub payload: String,
    /// Who sent it.
    pub actor: String,
}

/// One history row to append.
#[derive(Debug, Clone)]
pub struct NewHistory {
    /// What happened.
    pub kind: String,
    /// The step.
    pub step: Option<String>,
    /// Details (JSON).
    pub detail: String,
    /// Who.
    pub actor: String,
}

/// Everything one instance's advance writes.
#[derive(Debug, Clone, Default)]
pub struct Advance {
    /// Id.
    pub id: String,
    /// The version read at claim time.
    pub version: i64,
    /// New state (JSON).
    pub state: String,
    /// New status word.
    pub status: String,
    /// Outcome when ended.
    pub outcome: Option<String>,
    /// Whether the instance ended.
    pub ended: bool,
    /// Event rows consumed.
    pub consumed: Vec<i64>,
    /// History to append.
    pub history: Vec<NewHistory>,
    /// Timers to store.
    pub arm: Vec<ArmTimer>,
    /// Timers to delete.
    pub cancel: Vec<i64>,
    /// Keyed subscriptions to add.
    pub subscribe: Vec<Subscription>,
    /// Keyed subscriptions to drop.
    pub unsubscribe: Vec<Subscription>,
    /// Instances to create (linked children), each with its start event.
    pub children: Vec<NewInstance>,
    /// Events for instances, due now: the parent when this one ended, or this instance
    /// itself when its advance ran out of its step budget and continues in the next round.
    pub notify: Vec<InstanceEvent>,
    /// When set, the instance ended cancelled and this event (a cancellation) is sent to
    /// each of its running children that is not detached, in the same transaction.
    pub cancel_children: Option<String>,
    /// Mail to queue.
    pub mails: Vec<NewMail>,
    /// Task rows to create, reassign, reopen or close, in order.
    pub tasks: Vec<TaskOp>,
}

impl Advance {
    /// How many of the instances it creates are its own children (the rest are started
    /// by those, in the same transaction).
    pub fn children_started(&self) -> i64 {
        self.children
            .iter()
            .filter(|c| c.parent.as_ref().is_some_and(|p| p.instance == self.id))
            .count() as i64
    }
}

/// A timer to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmTimer {
    /// The timer's id within the instance.
    pub timer: i64,
    /// When it falls due (ms).
    pub due_at: i64,
    /// The event it delivers (JSON).
    pub payload: String,
}

/// A keyed subscription: the instance receives events named `name` with this key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The event name.
    pub name: String,
    /// The correlation key.
    pub key: String,
}

/// An event for an instance, sent by the instance that advanced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    /// The instance it is for.
    pub instance: String,
    /// The engine event (JSON).
    pub payload: String,
}

/// A rendered message to queue in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// Outbox id.
    pub id: String,
    /// The instance that sends it.
    pub instance_id: Option<String>,
    /// The step that sends it.
    pub step: Option<String>,
    /// Stable Message-ID.
    pub message_id: String,
    /// From.
    pub from: String,
    /// To.
    pub to: Vec<String>,
    /// Cc.
    pub cc: Vec<String>,
    /// Bcc.
    pub bcc: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Text part.
    pub text: String,
    /// HTML part.
    pub html: Option<String>,
    /// Locale used.
    pub locale: String,
}

/// An outbox row as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MailRecord {
    /// Outbox id.
    pub id: String,
    /// Sending instance.
    pub instance_id: Option<String>,
    /// Sending step.
    pub step: Option<String>,
    /// Message-ID.
    pub message_id: String,
    /// Recipients (to, cc, bcc).
    pub recipients: serde_json::Value,
    /// Subject.
    pub subject: String,
    /// `queued`, `sent` or `dead`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// Next attempt (ms).
    pub next_attempt_at: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The server's reply on success.
    pub reply: Option<String>,
    /// Queued (ms).
    pub created_at: i64,
    /// Sent (ms).
    pub sent_at: Option<i64>,
    /// Each recipient's delivery so far (see [`RecipientDelivery`]).
    pub delivery: serde_json::Value,
}

/// A claimed message, ready to send.
#[derive(Debug, Clone)]
pub struct ClaimedMail {
    /// The message.
    pub mail: NewMail,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The recipients already dealt with (sent or refused), by recipient.
    pub delivery: Delivery,
}

/// Each recipient's delivery of a message, by recipient (its address, or `reporter`).
pub type Delivery = std::collections::BTreeMap<String, RecipientDelivery>;

/// How the delivery to one recipient ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipientDelivery {
    /// `sent` or `refused`.
    pub state: String,
    /// The server's reply.
    pub reply: String,
    /// When (ms).
    pub at: i64,
}

/// How a send attempt ended.
#[derive(Debug, Clone)]
pub enum MailOutcome {
    /// Delivered to every recipient, with the server's last reply.
    Sent(String),
    /// Delivered to some recipients and refused by the others, for good: the message is
    /// done (`sent`), with the last accepted reply and what the refusals were.
    Partial(String, String),
    /// Try again at this time (ms), after this error.
    Retry(i64, String),
    /// Give up: a dead letter with this reply.
    Dead(String),
}

/// An instance as listed and shown.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceRow {
    /// Id.
    pub id: String,
    /// Workflow id.
    pub workflow: String,
    /// Pinned version.
    pub def_hash: String,
    /// Status word.
    pub status: String,
    /// Outcome.
    pub outcome: Option<String>,
    /// Parent id.
    pub parent_id: Option<String>,
    /// Link name in the parent.
    pub parent_link: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
    /// Ended (ms).
    pub ended_at: Option<i64>,
    /// Next due work (ms).
    pub wake_at: Option<i64>,
    /// Version.
    pub version: i64,
}

/// A stored history row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRecord {
    /// Row id (order).
    pub id: i64,
    /// When (ms).
    pub at: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub kind: String,
    /// The step.
    pub step: Option<String>,
    /// Details.
    pub detail: serde_json::Value,
}

/// A pending event or timer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRecord {
    /// Row id.
    pub id: i64,
    /// Due (ms).
    pub due_at: i64,
    /// `timer` or `event`.
    pub kind: String,
    /// The timer id for timers.
    pub timer_id: Option<i64>,
    /// The engine event.
    pub payload: serde_json::Value,
}

/// Filters for listing instances.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only children of this instance.
    pub parent: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Continue after this (created_at, id).
    pub after: Option<(i64, String)>,
}

const INSTANCE_COLUMNS: &str = "id, workflow, def_hash, status, outcome, parent_id, parent_link, idempotency_key, created_at, updated_at, ended_at, wake_at, version";

fn params(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn instance_row(r: &AnyRow) -> Result<InstanceRow, sqlx::Error> {
    Ok(InstanceRow {
        id: r.try_get("id")?,
        workflow: r.try_get("workflow")?,
        def_hash: r.try_get("def_hash")?,
        status: r.try_get("status")?,
        outcome: r.try_get("outcome")?,
        parent_id: r.try_get("parent_id")?,
        parent_link: r.try_get("parent_link")?,
        idempotency_key: r.try_get("idempotency_key")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        ended_at: r.try_get("ended_at")?,
        wake_at: r.try_get("wake_at")?,
        version: r.try_get("version")?,
    })
}

impl Store {
    /// Opens (creating when needed) and migrates the store at `cfg.url`.
    pub async fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let url = cfg.url.trim();
        let (backend, url) = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let file = path.split('?').next().unwrap_or_default();
            if file.is_empty() {
                return Err(StoreError::Url(cfg.url.clone(), "no file path".into()));
            }
            let parent = std::path::Path::new(file)
                .parent()
                .filter(|d| file != ":memory:" && !d.as_os_str().is_empty());
            if let Some(dir) = parent {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Url(cfg.url.clone(), format!("creating {}: {e}", dir.display()))
                })?;
            }
            let sep = if path.contains('?') { "&" } else { "?" };
            let url = if path.contains("mode=") {
                format!("sqlite://{path}")
            } else {
                format!("sqlite://{path}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Url(
                cfg.url.clone(),
                "expected sqlite://PATH or postgres://…".into(),
            ));
        };
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Url(cfg.url.clone(), e.to_string()))?;
        let synchronous = match cfg.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite {
                cfg.max_connections.min(4)
            } else {
                cfg.max_connections
            })
            .acquire_timeout(Duration::from_secs(30))
            // A SQLite connection is a thread in this process: the ping before every
            // acquire is a thread round trip per query that cannot find a dropped
            // connection. PostgreSQL keeps it (a server can close idle connections).
            .test_before_acquire(backend != Backend::Sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute(format!("PRAGMA synchronous = {synchronous}").as_str())
                            .await?;
                        conn.execute("PRAGMA busy_timeout = 15000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/sqlite")
                    .run(&self.pool)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            // Take the write lock up front: a deferred transaction that reads and then
            // writes can fail with "database is locked" even with a busy timeout.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Records a workflow version (idempotent).
    pub async fn save_definition(
        &self,
        hash: &str,
        workflow: &str,
        file: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO definitions (hash, workflow, file, source, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
            .bind(hash)
            .bind(workflow)
            .bind(file)
            .bind(source)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The file and text of a stored version.
    pub async fn definition(&self, hash: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT file, source FROM definitions WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| (r.get::<String, _>("file"), r.get::<String, _>("source"))))
    }

    /// Creates instance trees (a root, then its concurrently started instances) in one
    /// transaction. A root whose idempotency key was used before is not created again.
    pub async fn start(
        &self,
        trees: &[Vec<NewInstance>],
        now: i64,
    ) -> Result<Vec<Started>, StoreError> {
        // Two starts with one key can both find the key unused (PostgreSQL, read
        // committed); the later insert then hits the unique index. Trying again finds
        // the committed instance and answers `Existing`, as the key promises.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.start_once(trees, now).await {
                Err(StoreError::Db(e)) if attempt < 3 && is_unique_violation(&e) => continue,
                other => return other,
            }
        }
    }

    async fn start_once(
        &self,
        trees: &[Vec<NewInstance>],
        now: i64,
    ) -> Result<Vec<Started>, StoreError> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(trees.len());
        let mut rows: Vec<&NewInstance> = Vec::new();
        // Keys used earlier in this call: the rows are inserted together at the end.
        let mut keys: HashMap<(&str, &str), &str> = HashMap::new();
        for tree in trees {
            let Some(root) = tree.first() else { continue };
            if let Some(key) = &root.idempotency_key {
                if let Some(id) = keys.get(&(root.workflow.as_str(), key.as_str())) {
                    out.push(Started::Existing((*id).to_owned()));
                    continue;
                }
                let existing = sqlx::query(
                    "SELECT id FROM instances WHERE workflow = $1 AND idempotency_key = $2",
                )
                .bind(&root.workflow)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(r) = existing {
                    out.push(Started::Existing(r.get("id")));
                    continue;
                }
                keys.insert((root.workflow.as_str(), key.as_str()), root.id.as_str());
            }
            rows.extend(tree);
            out.push(Started::New(root.id.clone()));
        }
        insert_instances(&mut tx, &rows, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Claims up to `limit` instances with due work for `lease_ms`, with their due events.
    pub async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE instances SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT id FROM instances WHERE wake_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY wake_at LIMIT $4{lock}) \
             RETURNING id, def_hash, state, version, parent_id, parent_link, parent_seq, ancestors, children_started, history_rows"
        );
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed: Vec<Claimed> = rows
            .iter()
            .map(|r| {
                let parent_id: Option<String> = r.get("parent_id");
                Claimed {
                    id: r.get("id"),
                    def_hash: r.get("def_hash"),
                    state: r.get("state"),
                    version: r.get("version"),
                    parent: parent_id.map(|instance| ParentLink {
                        instance,
                        link: r
                            .get::<Option<String>, _>("parent_link")
                            .unwrap_or_default(),
                        seq: r.get::<Option<i64>, _>("parent_seq").unwrap_or_default(),
                    }),
                    // A list this daemon wrote; an unreadable one counts as a root.
                    ancestors: serde_json::from_str(&r.get::<String, _>("ancestors"))
                        .unwrap_or_default(),
                    children_started: r.get("children_started"),
                    history_rows: r.get("history_rows"),
                    events: Vec::new(),
                }
            })
            .collect();
        let index: HashMap<String, usize> = claimed
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        for chunk in claimed
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>()
            .chunks(500)
        {
            let sql = format!(
                "SELECT id, instance_id, payload, actor FROM events WHERE due_at <= $1 AND instance_id IN ({}) ORDER BY due_at, id",
                params(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(now);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let inst: String = r.get("instance_id");
                if let Some(&i) = index.get(&inst) {
                    claimed[i].events.push(PendingEvent {
                        id: r.get("id"),
                        payload: r.get("payload"),
                        actor: r.get("actor"),
                    });
                }
            }
        }
        Ok(claimed)
    }

    /// Releases the claims of a daemon that is starting again: on SQLite every claim
    /// (one daemon owns the file), on PostgreSQL those of `node` (a configured node id).
    pub async fn release_stale(&self, node: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for table in ["instances", "outbox"] {
            let r = match self.backend {
                Backend::Sqlite => {
                    sqlx::query(&format!("UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL"))
                        .execute(&self.pool)
                        .await?
                }
                Backend::Postgres => {
                    sqlx::query(&format!("UPDATE {table} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1"))
                        .bind(node)
                        .execute(&self.pool)
                        .await?
                }
            };
            n += r.rows_affected();
        }
        Ok(n)
    }

    /// The lease owners of instances and outbox rows whose id starts with `prefix`.
    pub async fn lease_owners(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = std::collections::BTreeSet::new();
        for table in ["instances", "outbox"] {
            let rows = sqlx::query(&format!(
                "SELECT DISTINCT lease_owner FROM {table} WHERE lease_owner LIKE $1"
            ))
            .bind(format!("{prefix}%"))
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                out.insert(r.try_get::<String, _>("lease_owner")?);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Gives claimed instances back without changing them.
    pub async fn release(&self, ids: &[String]) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE instances SET lease_owner = NULL, lease_until = NULL WHERE id IN ({})",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Writes a batch of advances in one transaction; all or nothing.
    ///
    /// Rows of one kind from every instance go out as multi-row statements (a few round
    /// trips per batch, not several per instance). The instance rows go last, checked
    /// against the versions read and with the wake time recomputed from the events left;
    /// a conflict still rolls the whole batch back.
    pub async fn commit(&self, batch: &[Advance], now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let mut woken: Vec<String> = Vec::new();
        let mut history: Vec<(&str, &NewHistory)> = Vec::new();
        let mut consumed: Vec<i64> = Vec::new();
        let mut timers: Vec<(&str, i64, i64, &str)> = Vec::new();
        let mut ended: Vec<&str> = Vec::new();
        let mut children: Vec<&NewInstance> = Vec::new();
        for a in batch {
            consumed.extend(&a.consumed);
            history.extend(a.history.iter().map(|h| (a.id.as_str(), h)));
            timers.extend(
                a.arm
                    .iter()
                    .map(|t| (a.id.as_str(), t.timer, t.due_at, t.payload.as_str())),
            );
            if a.ended {
                ended.push(a.id.as_str());
            } else {
                for chunk in a.cancel.chunks(500) {
                    let sql = format!(
                        "DELETE FROM events WHERE instance_id = $1 AND timer_id IN ({})",
                        params(2, chunk.len())
                    );
                    let mut q = sqlx::query(&sql).bind(&a.id);
                    for t in chunk {
                        q = q.bind(t);
                    }
                    q.execute(&mut *tx).await?;
                }
                for sub in &a.subscribe {
                    sqlx::query("INSERT INTO subscriptions (name, key, instance_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                        .bind(&sub.name)
                        .bind(&sub.key)
                        .bind(&a.id)
                        .execute(&mut *tx)
                        .await?;
                }
                for sub in &a.unsubscribe {
                    sqlx::query("DELETE FROM subscriptions WHERE name = $1 AND key = $2 AND instance_id = $3")
                        .bind(&sub.name)
                        .bind(&sub.key)
                        .bind(&a.id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            children.extend(&a.children);
            for m in &a.mails {
                insert_mail(&mut tx, m, now).await?;
            }
            for n in &a.notify {
                sqlx::query("INSERT INTO events (instance_id, due_at, kind, timer_id, payload, actor) VALUES ($1, $2, 'event', NULL, $3, $4)")
                    .bind(&n.instance)
                    .bind(now)
                    .bind(&n.payload)
                    .bind(format!("instance:{}", a.id))
                    .execute(&mut *tx)
                    .await?;
                woken.push(n.instance.clone());
            }
            if let Some(payload) = &a.cancel_children {
                // One level per transaction: each child cancels its own children when
                // it advances, so a tree of any size is cancelled in bounded steps.
                let rows = sqlx::query(
                    "SELECT id FROM instances WHERE parent_id = $1 AND ended_at IS NULL AND detached = 0",
                )
                .bind(&a.id)
                .fetch_all(&mut *tx)
                .await?;
                for r in rows {
                    let child: String = r.get("id");
                    sqlx::query("INSERT INTO events (instance_id, due_at, kind, timer_id, payload, actor) VALUES ($1, $2, 'event', NULL, $3, $4)")
                        .bind(&child)
                        .bind(now)
                        .bind(payload)
                        .bind(format!("instance:{}", a.id))
                        .execute(&mut *tx)
                        .await?;
                    woken.push(child);
                }
            }
        }
        for chunk in pow2_chunks(&ended, 512) {
            let list = params(1, chunk.len());
            for sql in [
                format!("DELETE FROM events WHERE kind = 'timer' AND instance_id IN ({list})"),
                format!("DELETE FROM subscriptions WHERE instance_id IN ({list})"),
            ] {
                let mut q = sqlx::query(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
        }
        insert_instances(&mut tx, &children, now).await?;
        tasks::write_task_ops(&mut tx, batch, now).await?;
        for chunk in pow2_chunks(&consumed, 512) {
            let sql = format!(
                "DELETE FROM events WHERE id IN ({})",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in pow2_chunks(&timers, 256) {
            let values = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(${}, ${}, 'timer', ${}, ${}, 'clock')",
                        4 * i + 1,
                        4 * i + 2,
                        4 * i + 3,
                        4 * i + 4
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO events (instance_id, due_at, kind, timer_id, payload, actor) VALUES {values} ON CONFLICT DO NOTHING"
            );
            let mut q = sqlx::query(&sql);
            for (inst, timer, at, payload) in chunk {
                q = q.bind(*inst).bind(*at).bind(*timer).bind(*payload);
            }
            q.execute(&mut *tx).await?;
        }
        // Each instance's history is a hash chain (see `audit.rs`).
        let chained = audit::chain_history(&mut tx, &history, now).await?;
        let history: Vec<_> = history.iter().zip(&chained).collect();
        for chunk in pow2_chunks(&history, 512) {
            let values = (0..chunk.len())
                .map(|i| {
                    let k = 9 * i;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        k + 1,
                        k + 2,
                        k + 3,
                        k + 4,
                        k + 5,
                        k + 6,
                        k + 7,
                        k + 8,
                        k + 9
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO history (instance_id, at, actor, kind, step, detail, seq, prev_hash, hash) VALUES {values}"
            );
            let mut q = sqlx::query(&sql);
            for ((inst, h), c) in chunk {
                q = q
                    .bind(*inst)
                    .bind(now)
                    .bind(&h.actor)
                    .bind(&h.kind)
                    .bind(&h.step)
                    .bind(&h.detail)
                    .bind(c.seq)
                    .bind(&c.prev_hash)
                    .bind(&c.hash);
            }
            q.execute(&mut *tx).await?;
        }
        // The instance rows, with their wake time recomputed from their remaining events.
        for chunk in pow2_chunks(batch, 256) {
            let values = (0..chunk.len())
                .map(|i| {
                    let k = 8 * i + 1;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                        k + 1,
                        k + 2,
                        k + 3,
                        k + 4,
                        k + 5,
                        k + 6,
                        k + 7,
                        k + 8
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "WITH v (v_id, v_version, v_state, v_status, v_outcome, v_ended_at, v_children, v_history) AS (VALUES {values}) \
                 UPDATE instances SET state = v_state, status = v_status, outcome = v_outcome, version = version + 1, \
                 children_started = children_started + v_children, history_rows = history_rows + v_history, \
                 updated_at = $1, ended_at = v_ended_at, lease_owner = NULL, lease_until = NULL, \
                 wake_at = (SELECT MIN(e.due_at) FROM events e WHERE e.instance_id = instances.id) \
                 FROM v WHERE id = v_id AND version = v_version RETURNING id"
            );
            let mut q = sqlx::query(&sql).bind(now);
            for a in chunk {
                q = q
                    .bind(&a.id)
                    .bind(a.version)
                    .bind(&a.state)
                    .bind(&a.status)
                    .bind(&a.outcome)
                    .bind(a.ended.then_some(now))
                    .bind(a.children_started())
                    .bind(a.history.len() as i64);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            if rows.len() != chunk.len() {
                let written: std::collections::HashSet<String> =
                    rows.iter().map(|r| r.get("id")).collect();
                let lost = chunk
                    .iter()
                    .find(|a| !written.contains(&a.id))
                    .map_or_else(String::new, |a| a.id.clone());
                return Err(StoreError::Conflict(lost));
            }
        }
        // Instances outside the batch that were sent an event wake now.
        let mut touched: Vec<&str> = woken
            .iter()
            .map(String::as_str)
            .filter(|w| !batch.iter().any(|a| a.id == *w))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for chunk in pow2_chunks(&touched, 512) {
            let sql = format!(
                "UPDATE instances SET wake_at = (SELECT MIN(e.due_at) FROM events e WHERE e.instance_id = instances.id) WHERE id IN ({})",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sends an event to one instance. Returns false when there is no such running instance.
    pub async fn send(
        &self,
        id: &str,
        payload: &str,
        actor: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let running = sqlx::query("SELECT id FROM instances WHERE id = $1 AND status = 'running'")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if running {
            push_event(&mut tx, id, payload, actor, now).await?;
        }
        tx.commit().await?;
        Ok(running)
    }

    /// Sends a keyed event to every instance subscribed to `(name, key)`. Returns their ids.
    pub async fn send_keyed(
        &self,
        name: &str,
        key: &str,
        payload: &str,
        actor: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        let ids: Vec<String> =
            sqlx::query("SELECT instance_id FROM subscriptions WHERE name = $1 AND key = $2")
                .bind(name)
                .bind(key)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.get("instance_id"))
                .collect();
        for id in &ids {
            push_event(&mut tx, id, payload, actor, now).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// The earliest time anything is due, if anything is.
    pub async fn next_wake(&self) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query("SELECT MIN(wake_at) AS w FROM instances WHERE wake_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<Option<i64>, _>("w")?)
    }

    /// One instance with its state (JSON).
    pub async fn instance(&self, id: &str) -> Result<Option<(InstanceRow, String)>, StoreError> {
        let sql = format!("SELECT {INSTANCE_COLUMNS}, state FROM instances WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => Ok(Some((instance_row(&r)?, r.try_get("state")?))),
            None => Ok(None),
        }
    }

    /// Instances, newest first, filtered and paged.
    pub async fn list(&self, f: &ListFilter) -> Result<Vec<InstanceRow>, StoreError> {
        let mut sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if f.workflow.is_some() {
            sql += &format!(" AND workflow = {}", next());
        }
        if f.status.is_some() {
            sql += &format!(" AND status = {}", next());
        }
        if f.parent.is_some() {
            sql += &format!(" AND parent_id = {}", next());
        }
        if f.after.is_some() {
            let (a, b, c) = (next(), next(), next());
            sql += &format!(" AND (created_at < {a} OR (created_at = {b} AND id < {c}))");
        }
        sql += &format!(" ORDER BY created_at DESC, id DESC LIMIT {}", next());
        let mut q = sqlx::query(&sql);
        if let Some(w) = &f.workflow {
            q = q.bind(w);
        }
        if let Some(s) = &f.status {
            q = q.bind(s);
        }
        if let Some(p) = &f.parent {
            q = q.bind(p);
        }
        if let Some((at, id)) = &f.after {
            q = q.bind(*at).bind(*at).bind(id);
        }
        q = q.bind(f.limit.clamp(1, 1000) as i64);
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| instance_row(r).map_err(StoreError::from))
            .collect()
    }

    /// The history of an instance, in order.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        let rows = sqlx::query("SELECT id, at, actor, kind, step, detail FROM history WHERE instance_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(HistoryRecord {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    kind: r.try_get("kind")?,
                    step: r.try_get("step")?,
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                })
            })
            .collect()
    }

    /// Pending timers and events of an instance.
    pub async fn pending(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query("SELECT id, due_at, kind, timer_id, payload FROM events WHERE instance_id = $1 ORDER BY due_at, id")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(EventRecord {
                    id: r.try_get("id")?,
                    due_at: r.try_get("due_at")?,
                    kind: r.try_get("kind")?,
                    timer_id: r.try_get("timer_id")?,
                    payload: serde_json::from_str(&payload)
                        .unwrap_or(serde_json::Value::String(payload)),
                })
            })
            .collect()
    }

    /// Queues messages outside a transition (digests, reminders).
    pub async fn queue_mail(&self, mails: &[NewMail], now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for m in mails {
            insert_mail(&mut tx, m, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claims up to `limit` queued messages that are due, for `lease_ms`.
    pub async fn claim_mail(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<ClaimedMail>, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY next_attempt_at LIMIT $4{lock}) \
             RETURNING id, instance_id, step, message_id, sender, recipients, subject, text_body, html_body, locale, attempts, delivery"
        );
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&sql)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let recipients: String = r.try_get("recipients")?;
                let rec: serde_json::Value = serde_json::from_str(&recipients).unwrap_or_default();
                let list = |k: &str| -> Vec<String> {
                    rec[k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                };
                Ok(ClaimedMail {
                    mail: NewMail {
                        id: r.try_get("id")?,
                        instance_id: r.try_get("instance_id")?,
                        step: r.try_get("step")?,
                        message_id: r.try_get("message_id")?,
                        from: r.try_get("sender")?,
                        to: list("to"),
                        cc: list("cc"),
                        bcc: list("bcc"),
                        subject: r.try_get("subject")?,
                        text: r.try_get("text_body")?,
                        html: r.try_get("html_body")?,
                        locale: r.try_get("locale")?,
                    },
                    attempts: r.try_get("attempts")?,
                    // Written only by `finish_mail`; unreadable counts as nobody reached.
                    delivery: serde_json::from_str(&r.try_get::<String, _>("delivery")?)
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records how a send attempt ended, releasing the claim.
    /// `delivery` is each recipient's state after this attempt.
    pub async fn finish_mail(
        &self,
        id: &str,
        outcome: &MailOutcome,
        delivery: &Delivery,
        now: i64,
    ) -> Result<(), StoreError> {
        let q = match outcome {
            MailOutcome::Sent(reply) => sqlx::query(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = $1, reply = $2, lease_owner = NULL, lease_until = NULL, delivery = $3 WHERE id = $4",
            )
            .bind(now)
            .bind(reply.clone()),
            MailOutcome::Partial(reply, error) => sqlx::query(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = $1, reply = $2, last_error = $3, lease_owner = NULL, lease_until = NULL, delivery = $4 WHERE id = $5",
            )
            .bind(now)
            .bind(reply.clone())
            .bind(error.clone()),
            MailOutcome::Retry(at, error) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2, lease_owner = NULL, lease_until = NULL, delivery = $3 WHERE id = $4",
            )
            .bind(*at)
            .bind(error.clone()),
            MailOutcome::Dead(error) => sqlx::query(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, next_attempt_at = $1, last_error = $2, lease_owner = NULL, lease_until = NULL, delivery = $3 WHERE id = $4",
            )
            .bind(now)
            .bind(error.clone()),
        };
        q.bind(serde_json::to_string(delivery).expect("delivery serialises"))
            .bind(id.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Messages, newest first.
    pub async fn list_mail(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MailRecord>, StoreError> {
        let cols = MAIL_COLUMNS;
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!("SELECT {cols} FROM outbox WHERE status = $1 ORDER BY created_at DESC, id DESC LIMIT $2"))
                    .bind(s)
                    .bind(limit.clamp(1, 1000) as i64)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {cols} FROM outbox ORDER BY created_at DESC, id DESC LIMIT $1"))
                    .bind(limit.clamp(1, 1000) as i64)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| mail_record(r).map_err(StoreError::from))
            .collect()
    }

    /// Puts a dead (or queued) message back in the queue, due now. False when unknown or sent.
    pub async fn retry_mail(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE outbox SET status = 'queued', next_attempt_at = $1, attempts = 0, lease_owner = NULL, lease_until = NULL \
             WHERE id = $2 AND status IN ('dead', 'queued')",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The earliest time a queued message is due.
    pub async fn next_mail(&self) -> Result<Option<i64>, StoreError> {
        let r = sqlx::query("SELECT MIN(next_attempt_at) AS w FROM outbox WHERE status = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<Option<i64>, _>("w")?)
    }

    /// How many instances are in each status.
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT workflow, status, COUNT(*) AS n FROM instances GROUP BY workflow, status ORDER BY workflow, status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("workflow"), r.get("status"), r.get("n")))
            .collect())
    }
}

async fn insert_mail(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    m: &NewMail,
    now: i64,
) -> Result<(), StoreError> {
    let recipients = serde_json::json!({ "to": m.to, "cc": m.cc, "bcc": m.bcc }).to_string();
    sqlx::query(
        "INSERT INTO outbox (id, instance_id, step, message_id, sender, recipients, subject, text_body, html_body, locale, \
         status, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', 0, $11, $11)",
    )
    .bind(&m.id)
    .bind(&m.instance_id)
    .bind(&m.step)
    .bind(&m.message_id)
    .bind(&m.from)
    .bind(recipients)
    .bind(&m.subject)
    .bind(&m.text)
    .bind(&m.html)
    .bind(&m.locale)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The columns [`mail_record`] reads.
pub(crate) const MAIL_COLUMNS: &str = "id, instance_id, step, message_id, recipients, subject, status, attempts, next_attempt_at, last_error, reply, created_at, sent_at, delivery";

fn mail_record(r: &AnyRow) -> Result<MailRecord, sqlx::Error> {
    let recipients: String = r.try_get("recipients")?;
    Ok(MailRecord {
        id: r.try_get("id")?,
        instance_id: r.try_get("instance_id")?,
        step: r.try_get("step")?,
        message_id: r.try_get("message_id")?,
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        subject: r.try_get("subject")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        reply: r.try_get("reply")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
        delivery: serde_json::from_str(&r.try_get::<String, _>("delivery")?).unwrap_or_default(),
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// Splits `items` into runs of at most `max` whose lengths are powers of two, so a
/// multi-row statement comes in few shapes and its prepared form stays cached.
fn pow2_chunks<T>(items: &[T], max: usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut rest = items;
    while !rest.is_empty() {
        let n = max.min(1 << rest.len().ilog2());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// Inserts instance rows and their start events, many per statement.
async fn insert_instances(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    insts: &[&NewInstance],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in pow2_chunks(insts, 256) {
        let values = (0..chunk.len())
            .map(|i| {
                let k = 11 * i + 1;
                format!(
                    "(${}, ${}, ${}, 'running', NULL, ${}, 0, ${}, ${}, ${}, ${}, $1, $1, NULL, $1, ${}, ${}, ${})",
                    k + 1, k + 2, k + 3, k + 4, k + 5, k + 6, k + 7, k + 8, k + 9, k + 10, k + 11
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO instances (id, workflow, def_hash, status, outcome, state, version, parent_id, parent_link, parent_seq, \
             idempotency_key, created_at, updated_at, ended_at, wake_at, case_number, ancestors, detached) VALUES {values}"
        );
        let mut q = sqlx::query(&sql).bind(now);
        for inst in chunk {
            let (parent_id, parent_link, parent_seq) = match &inst.parent {
                Some(p) => (
                    Some(p.instance.as_str()),
                    Some(p.link.as_str()),
                    Some(p.seq),
                ),
                None => (None, None, None),
            };
            q = q
                .bind(&inst.id)
                .bind(&inst.workflow)
                .bind(&inst.def_hash)
                .bind(&inst.state)
                .bind(parent_id)
                .bind(parent_link)
                .bind(parent_seq)
                .bind(&inst.idempotency_key)
                .bind(&inst.case_number)
                .bind(serde_json::to_string(&inst.ancestors).expect("strings serialise"))
                .bind(i64::from(inst.detached));
        }
        q.execute(&mut **tx).await?;
        let values = (0..chunk.len())
            .map(|i| {
                format!(
                    "(${}, $1, 'event', NULL, ${}, ${})",
                    3 * i + 2,
                    3 * i + 3,
                    3 * i + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO events (instance_id, due_at, kind, timer_id, payload, actor) VALUES {values}"
        );
        let mut q = sqlx::query(&sql).bind(now);
        for inst in chunk {
            q = q.bind(&inst.id).bind(&inst.start_event).bind(&inst.actor);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn push_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    payload: &str,
    actor: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO events (instance_id, due_at, kind, timer_id, payload, actor) VALUES ($1, $2, 'event', NULL, $3, $4)")
        .bind(id)
        .bind(now)
        .bind(payload)
        .bind(actor)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE instances SET wake_at = $1 WHERE id = $2 AND (wake_at IS NULL OR wake_at > $1)",
    )
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
