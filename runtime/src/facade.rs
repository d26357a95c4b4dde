//! [`Runtime`]: the one façade the API, the web console and the CLI call. It owns the
//! store, the deployment and the engine, mailer, scheduler and retention services; each
//! write method performs its write and wakes the service that acts on it, so no caller
//! can forget a wake-up.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use clearflow_core::engine::Event;
use clearflow_core::{Catalog, Workflow};
use serde_json::Value;
use tokio::sync::watch;

use crate::clock::{Clock, ms};
use crate::config::{ClockMode, Config};
use crate::directory::Directory;
use crate::identity::IdentityKey;
use crate::mailer::Mailer;
use crate::registry::{Registry, Sources};
use crate::retention::Retention;
use crate::scheduler::{ScheduleView, Scheduler};
use crate::service::{ServiceHealth, supervise};
use crate::worker::{BeforeAdvance, StartError, Worker};
use clearflow_store::identity::StoredIdentity;
use clearflow_store::schedules::FireRecord;
use clearflow_store::{
    AuditEvent, AuditRecord, Closing, EventRecord, HistoryRecord, InstanceRow, ListFilter,
    MailRecord, NewInstance, Started, Store, StoreError, TaskFilter, TaskRefused, TaskRow,
    TokenRecord,
};

/// Why the runtime could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `[clock] start` is not an RFC 3339 time.
    #[error("clock.start `{0}` is not an RFC 3339 time")]
    ClockStart(String),
    /// The plugin host could not start.
    #[error("starting the plugin host: {0}")]
    PluginHost(String),
    /// Declared plugins could not be loaded (every reason).
    #[error("{} plugin(s) could not be loaded: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Plugins(Vec<clearflow_plugin_host::LoadError>),
    /// The identity key is missing or unusable.
    #[error("{0}")]
    IdentityKey(String),
    /// The store could not be opened or migrated.
    #[error("opening the store {url}: {source}")]
    Store {
        /// The store's URL without its password.
        url: String,
        /// What failed.
        source: StoreError,
    },
    /// Claims left by an earlier run could not be released.
    #[error("releasing stale claims: {0}")]
    Release(StoreError),
    /// The mail transport is misconfigured.
    #[error("mail transport: {0}")]
    Mail(String),
    /// The working directory cannot be read.
    #[error("working directory: {0}")]
    Io(#[from] std::io::Error),
    /// Staff secrets stored in clear could not be sealed.
    #[error("sealing stored TOTP secrets: {0}")]
    Secrets(String),
}

/// Options that only tests need.
#[derive(Default, Clone)]
pub struct Hooks {
    /// Called before each instance is advanced, with its id (fault injection).
    pub before_advance: Option<BeforeAdvance>,
}

/// The running daemon's state behind one façade.
pub struct Runtime {
    cfg: Config,
    config_file: Option<PathBuf>,
    base: PathBuf,
    host: Arc<clearflow_plugin_host::Host>,
    worker: Arc<Worker>,
    mailer: Arc<Mailer>,
    scheduler: Arc<Scheduler>,
    retention: Arc<Retention>,
    identity_key: Option<IdentityKey>,
    health: RwLock<Vec<Arc<ServiceHealth>>>,
}

/// What `/readyz` reports when the daemon is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// Every reason, e.g. "the store does not answer" or "engine is not running".
    pub reasons: Vec<String>,
}

/// The clock the configuration asks for.
pub fn make_clock(cfg: &crate::config::ClockConfig) -> Result<Clock, OpenError> {
    Ok(match cfg.mode {
        ClockMode::System => Clock::System,
        ClockMode::Manual => {
            let start = match &cfg.start {
                Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|_| OpenError::ClockStart(s.clone()))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            tracing::warn!(%start, "running on a MANUAL clock: time moves only through POST /v1/admin/clock");
            Clock::manual(start)
        }
    })
}

/// Loads the identity key as the configuration asks. With intake enabled a key is
/// required, and the daemon refuses to start without one.
pub fn load_key(cfg: &Config) -> Result<Option<IdentityKey>, OpenError> {
    let configured = cfg.identity.key_file.is_some()
        || std::env::var(crate::identity::KEY_ENV).is_ok_and(|v| !v.trim().is_empty());
    if !configured && cfg.intake.workflow.is_none() {
        return Ok(None);
    }
    match IdentityKey::load(cfg.identity.key_file.as_deref()) {
        Ok(k) => {
            tracing::info!(key = %k.fingerprint(), "identity key loaded");
            Ok(Some(k))
        }
        Err(e) if cfg.intake.workflow.is_some() => Err(OpenError::IdentityKey(format!(
            "complaint intake is enabled ([intake] workflow) but the identity key cannot be used: {e}"
        ))),
        Err(e) => Err(OpenError::IdentityKey(e.to_string())),
    }
}

/// Where the configuration says the deployed files are.
pub fn sources(cfg: &Config) -> Sources {
    Sources {
        workflows: cfg.workflows.dir.clone(),
        calendars: cfg.workflows.calendars_dir(),
        templates: cfg.templates_dir(),
        users: cfg.directory.users.clone(),
        limits: cfg.limits.clone(),
    }
}

/// The URL without a password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Runtime {
    /// Opens the store (migrating it), loads plugins and the deployment, and releases
    /// claims an earlier run of this daemon left. `config_file` is read again on
    /// [`Runtime::reload`] for the plugin declarations.
    pub async fn open(cfg: Config, config_file: Option<PathBuf>) -> Result<Runtime, OpenError> {
        Runtime::open_with(cfg, config_file, Hooks::default()).await
    }

    /// [`Runtime::open`] with test hooks.
    pub async fn open_with(
        cfg: Config,
        config_file: Option<PathBuf>,
        hooks: Hooks,
    ) -> Result<Runtime, OpenError> {
        let clock = make_clock(&cfg.clock)?;
        let identity_key = load_key(&cfg)?;
        let host = Arc::new(
            clearflow_plugin_host::Host::new(&cfg.plugin_host.cache_dir)
                .map_err(|e| OpenError::PluginHost(e.to_string()))?,
        );
        let base = std::env::current_dir()?;
        let plugins =
            crate::plugins::load(&host, &cfg.plugins, &base, &cfg.limits).map_err(|errors| {
                for e in &errors {
                    tracing::error!("{e}");
                }
                OpenError::Plugins(errors)
            })?;
        tracing::info!(plugins = cfg.plugins.len(), "plugins loaded");
        let store = Store::open(&cfg.store)
            .await
            .map_err(|source| OpenError::Store {
                url: redact(&cfg.store.url),
                source,
            })?;
        tracing::info!(backend = ?store.backend(), url = %redact(&cfg.store.url), "store ready");
        let registry = Arc::new(Registry::new());
        let mut worker = Worker::new(
            store.clone(),
            registry.clone(),
            clock.clone(),
            cfg.engine.clone(),
            cfg.mail.clone(),
        );
        worker.before_advance = hooks.before_advance;
        worker.limits = cfg.limits.clone();
        *worker.plugins.write().expect("lock") = plugins;
        let worker = Arc::new(worker);
        let mailer = Arc::new(
            Mailer::new(
                store,
                cfg.mail.clone(),
                clock,
                worker.node_id.clone(),
                worker.mail_wake.clone(),
            )
            .map_err(|e| OpenError::Mail(e.to_string()))?
            .with_identity_key(identity_key.clone()),
        );
        let scheduler = Arc::new(Scheduler::new(worker.clone()));
        let retention = Arc::new(Retention::new(worker.clone(), cfg.retention.clone()));
        let rt = Runtime {
            cfg,
            config_file,
            base,
            host,
            worker,
            mailer,
            scheduler,
            retention,
            identity_key,
            health: RwLock::new(Vec::new()),
        };
        rt.reload_deployment().await;
        // Claims left by an earlier run of this daemon (killed before it could release
        // them) are released now instead of waiting for their lease to expire.
        let released = rt
            .worker
            .store
            .release_stale(&rt.worker.node_id)
            .await
            .map_err(OpenError::Release)?;
        let released = released
            + rt.release_dead_local_owners()
                .await
                .map_err(OpenError::Release)?;
        if released > 0 {
            tracing::info!(released, "released claims left by a previous run");
        }
        // TOTP secrets an earlier version stored in clear are sealed now.
        let sealed = rt
            .seal_clear_secrets()
            .await
            .map_err(|e| OpenError::Secrets(e.to_string()))?;
        if sealed > 0 {
            tracing::info!(
                sealed,
                "sealed TOTP secrets stored in clear by an earlier version"
            );
        }
        Ok(rt)
    }

    /// Renders template `template` for `to` (`role:…`, `user:…` or addresses) about
    /// `instance`, queues it in the outbox and wakes the mailer.
    pub(crate) async fn queue_notice(
        &self,
        instance: &clearflow_store::InstanceRow,
        step: &str,
        template: &str,
        to: &[String],
        data: &Value,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mail = crate::mailer::render(
            &self.worker.mail,
            &self.worker.registry.deployment(),
            &crate::mailer::Request {
                instance: &instance.id,
                workflow: &instance.workflow,
                started_at: crate::clock::from_ms(instance.created_at),
                step,
                template,
                to,
                cc: &[],
                bcc: &[],
                locale: None,
                data,
            },
            now,
        );
        self.worker.store.queue_mail(&[mail], ms(now)).await?;
        self.worker.mail_wake.notify_one();
        Ok(())
    }

    /// The store, for the façade's other modules (never handed out of the crate).
    pub(crate) fn store(&self) -> &clearflow_store::Store {
        &self.worker.store
    }

    /// The configuration the runtime was opened with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Limits at the door.
    pub fn limits(&self) -> &clearflow_core::Limits {
        &self.cfg.limits
    }

    /// The identity key, when one is configured.
    pub fn identity_key(&self) -> Option<&IdentityKey> {
        self.identity_key.as_ref()
    }

    /// Runs the engine, mailer, scheduler and retention services under supervision
    /// until `shutdown` turns true, then waits for each to finish its round.
    pub async fn run(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let services = vec![
            supervise(self.worker.clone(), shutdown.clone()),
            supervise(self.mailer.clone(), shutdown.clone()),
            supervise(self.scheduler.clone(), shutdown.clone()),
            supervise(self.retention.clone(), shutdown.clone()),
        ];
        *self.health.write().expect("lock") = services.iter().map(|(h, _)| h.clone()).collect();
        for (_, handle) in services {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "supervisor ended abnormally");
            }
        }
    }

    /// Reloads workflows, calendars, templates, users and plugins (SIGHUP); on any
    /// problem with the plugins the loaded ones stay.
    pub async fn reload(&self) {
        self.reload_plugins();
        self.reload_deployment().await;
        self.worker.wake.notify_one();
        self.scheduler.wake.notify_one();
    }

    fn reload_plugins(&self) {
        let decls = match Config::load(self.config_file.as_deref()) {
            Ok(c) => c.plugins,
            Err(e) => {
                tracing::error!("{e}; keeping the loaded plugins");
                return;
            }
        };
        match crate::plugins::load(&self.host, &decls, &self.base, &self.cfg.limits) {
            Ok(p) => {
                *self.worker.plugins.write().expect("lock") = p;
                tracing::info!(plugins = decls.len(), "plugins reloaded");
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!("keeping the previously loaded plugins");
            }
        }
    }

    async fn reload_deployment(&self) {
        let registry = &self.worker.registry;
        let plugins = self.worker.plugins.read().expect("lock").names();
        let calendars_before = registry.calendars();
        let problems = registry
            .reload(
                &sources(&self.cfg),
                &plugins,
                &self.worker.store,
                ms(self.worker.clock.now()),
            )
            .await;
        for p in &problems {
            if p.is_warning() {
                tracing::warn!("{p}");
            } else {
                tracing::error!("{p}");
            }
        }
        if let Err(e) =
            crate::retention::check_template(&self.cfg.retention, registry.templates().as_ref())
        {
            for p in e {
                tracing::error!(
                    "[retention] template `{}`: {p}; expiry warnings become dead letters, and their cases are not deleted",
                    self.cfg.retention.template
                );
            }
        }
        if *registry.calendars() != *calendars_before {
            crate::provisional::calendars_changed(&self.worker).await;
        }
        let catalog = registry.catalog();
        tracing::info!(
            workflows = catalog.workflows.len(),
            problems = problems.len(),
            "workflows loaded: {}",
            catalog
                .workflows
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// With the default node id (`HOST-PID`), a restarted daemon has a new id; the
    /// claims of an earlier process on this host that no longer runs (`/proc/PID` is
    /// gone) are its own leftovers and are released at once rather than when their
    /// lease expires. A configured `engine.node_id` is stable across restarts.
    async fn release_dead_local_owners(&self) -> Result<u64, StoreError> {
        if self.cfg.engine.node_id.is_some() || !Path::new("/proc/self").exists() {
            return Ok(0);
        }
        let prefix = format!("{}-", crate::worker::host_name());
        let mut released = 0;
        for owner in self.worker.store.lease_owners(&prefix).await? {
            let Some(pid) = owner
                .strip_prefix(&prefix)
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            released += self.worker.store.release_stale(&owner).await?;
        }
        Ok(released)
    }

    // ---- readiness and metrics ------------------------------------------------------

    /// Ready when the store answers and every service is running and has completed a
    /// round within its expected interval.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        let mut reasons = Vec::new();
        if let Err(e) = self.worker.store.ping().await {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            reasons.push("the store does not answer".to_owned());
        }
        let health = self.health.read().expect("lock");
        if health.is_empty() {
            reasons.push("the services have not started".to_owned());
        }
        reasons.extend(health.iter().filter_map(|h| h.problem()));
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(NotReady { reasons })
        }
    }

    /// The Prometheus text exposition of every counter, the restarts per service and
    /// the instances by workflow and status.
    pub async fn metrics(&self) -> Result<String, StoreError> {
        let health = self.health.read().expect("lock").clone();
        let counts = self.worker.store.counts().await?;
        Ok(crate::metrics::render(&crate::metrics::Sources {
            engine: &self.worker.counters,
            mail: &self.mailer.counters,
            schedules: &self.scheduler.counters,
            retention: &self.retention.counters,
            services: &health,
            instances: &counts,
        }))
    }

    // ---- the clock ------------------------------------------------------------------

    /// The daemon's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.worker.clock.now()
    }

    /// Whether the clock is the manual one (`[clock] mode = "manual"`).
    pub fn clock_is_manual(&self) -> bool {
        self.worker.clock.is_manual()
    }

    /// Moves the manual clock to `to` (never back) and wakes every service. `None` when
    /// the daemon runs on the system clock.
    pub fn set_clock(&self, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.worker.clock.is_manual() {
            return None;
        }
        let now = self.worker.clock.set(to).unwrap_or(to);
        self.wake_all();
        Some(now)
    }

    fn wake_all(&self) {
        self.worker.wake.notify_one();
        self.mailer.wake.notify_one();
        self.scheduler.wake.notify_one();
        self.retention.wake.notify_one();
    }

    // ---- the deployment -------------------------------------------------------------

    /// The deployed workflows.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.worker.registry.catalog()
    }

    /// The deployed users and their roles.
    pub fn directory(&self) -> Arc<Directory> {
        self.worker.registry.directory()
    }

    /// Working days from today to the day of `due` (ms) on `workflow`'s calendar, in its
    /// time zone: positive when due later, 0 when due today, negative when overdue.
    /// Calendar days when the workflow has no calendar or the calendar has no year for
    /// a day in between (the figure is then provisional).
    pub fn working_days_until(&self, workflow: &Workflow, due: i64) -> i64 {
        let tz = workflow.timezone;
        let today = self.now().with_timezone(&tz).date_naive();
        let day = crate::clock::from_ms(due).with_timezone(&tz).date_naive();
        let calendars = self.worker.registry.calendars();
        let calendar = workflow.calendar.as_deref().and_then(|c| calendars.get(c));
        let (from, to, sign) = if day >= today {
            (today, day, 1)
        } else {
            (day, today, -1)
        };
        let mut n = 0i64;
        let mut d = from;
        while d < to {
            d = d.succ_opt().unwrap_or(d);
            if calendar.is_none_or(|c| c.is_working_day(d).unwrap_or(true)) {
                n += 1;
            }
            if n > 100_000 {
                break;
            }
        }
        sign * n
    }

    /// The workflow version with this definition hash, compiled from the store when it
    /// is no longer deployed.
    pub async fn version(
        &self,
        def_hash: &str,
    ) -> Result<Arc<Workflow>, crate::registry::VersionError> {
        self.worker
            .registry
            .version(def_hash, &self.worker.store)
            .await
    }

    // ---- instances ------------------------------------------------------------------

    /// Starts an instance (and its concurrent starts) now, in one transaction.
    pub async fn start(
        &self,
        workflow: &str,
        input: Value,
        actor: &str,
        idempotency_key: Option<String>,
    ) -> Result<Started, StartError> {
        self.worker
            .start(workflow, input, actor, idempotency_key)
            .await
    }

    /// Sends `event` to a running instance; false when there is none with this id.
    pub async fn send(&self, id: &str, event: &Event, actor: &str) -> Result<bool, StoreError> {
        self.worker.send(id, event, actor).await
    }

    /// Delivers a named event to every instance waiting for it with this key; returns
    /// the instances it reached.
    pub async fn send_keyed(
        &self,
        name: &str,
        key: &str,
        payload: &str,
        actor: &str,
    ) -> Result<Vec<String>, StoreError> {
        let now = ms(self.now());
        let reached = self
            .worker
            .store
            .send_keyed(name, key, payload, actor, now)
            .await?;
        self.worker.wake.notify_one();
        Ok(reached)
    }

    /// One page of instances.
    pub async fn list_instances(&self, f: &ListFilter) -> Result<Vec<InstanceRow>, StoreError> {
        self.worker.store.list(f).await
    }

    /// An instance and its state (JSON).
    pub async fn instance(&self, id: &str) -> Result<Option<(InstanceRow, String)>, StoreError> {
        self.worker.store.instance(id).await
    }

    /// The instance once it has settled (ended, or parked on a task, timer or event),
    /// or as it is when `timeout` runs out first; `None` when there is no such
    /// instance. Wakes at the engine's commit, not by polling (and reads again every
    /// second for work another daemon does).
    pub async fn wait_settled(
        &self,
        id: &str,
        timeout: std::time::Duration,
    ) -> Result<Option<(InstanceRow, String)>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let fired = self.worker.settled.register(id);
            let Some((row, state)) = self.worker.store.instance(id).await? else {
                return Ok(None);
            };
            let now = tokio::time::Instant::now();
            if crate::is_settled(&row.status, row.wake_at, ms(self.now())) || now >= deadline {
                return Ok(Some((row, state)));
            }
            let left = (deadline - now).min(crate::settle::RECHECK);
            let _ = tokio::time::timeout(left, fired).await;
        }
    }

    /// An instance's history, oldest first.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryRecord>, StoreError> {
        self.worker.store.history(id).await
    }

    /// An instance's pending events and timers.
    pub async fn pending(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        self.worker.store.pending(id).await
    }

    // ---- tasks ----------------------------------------------------------------------

    /// One page of tasks.
    pub async fn list_tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRow>, StoreError> {
        self.worker.store.list_tasks(f).await
    }

    /// A task by id.
    pub async fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError> {
        self.worker.store.task(id).await
    }

    /// Completes or rejects a task for `user` with `roles`, and on
    /// completion or rejection sends `payload` (the engine event) to its instance.
    pub async fn close_task(
        &self,
        id: &str,
        user: &str,
        roles: &[String],
        closing: &Closing,
        payload: &str,
    ) -> Result<Result<TaskRow, TaskRefused>, StoreError> {
        let now = ms(self.now());
        let r = self
            .worker
            .store
            .close_task(id, user, roles, closing, payload, now)
            .await?;
        if r.is_ok() {
            self.worker.wake.notify_one();
        }
        Ok(r)
    }

    // ---- mail -----------------------------------------------------------------------

    /// Outbox rows, newest first.
    pub async fn list_mail(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MailRecord>, StoreError> {
        self.worker.store.list_mail(status, limit).await
    }

    /// Queues a dead letter for another delivery; false when there is no such dead letter.
    pub async fn retry_mail(&self, id: &str) -> Result<bool, StoreError> {
        let ok = self.worker.store.retry_mail(id, ms(self.now())).await?;
        if ok {
            self.mailer.wake.notify_one();
        }
        Ok(ok)
    }

    // ---- audit and tokens -----------------------------------------------------------

    /// Audit records after `after`, oldest first.
    pub async fn audit_log(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.worker.store.audit_log(after, limit).await
    }

    /// Appends to the audit chain.
    pub async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.worker.store.audit(event).await
    }

    /// An API token by id.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.worker.store.token(id).await
    }

    /// Records a token's use, at most once per `since`; true when it was recorded.
    pub async fn touch_token(&self, id: &str, now: i64, since: i64) -> Result<bool, StoreError> {
        self.worker.store.touch_token(id, now, since).await
    }

    // ---- intake ---------------------------------------------------------------------

    /// The rows of a new instance of `workflow` (and its concurrent starts), not yet stored.
    pub fn prepare(
        &self,
        workflow: &str,
        input: Value,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<NewInstance>, StartError> {
        self.worker.tree(workflow, input, None, actor, None, now)
    }

    /// Whether a receipt lookup id is taken.
    pub async fn receipt_exists(&self, lookup: &str) -> Result<bool, StoreError> {
        self.worker.store.receipt_exists(lookup).await
    }

    /// Stores a complaint's instances, its receipt and its sealed identity in one
    /// transaction, and wakes the engine.
    pub async fn start_intake(
        &self,
        tree: &[NewInstance],
        receipt: (&str, &str),
        identity: Option<&StoredIdentity>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.worker
            .store
            .start_intake(tree, receipt, identity, ms(now))
            .await?;
        self.worker.wake.notify_one();
        Ok(())
    }

    /// The instance and the receipt's hash for a lookup id.
    pub async fn receipt(&self, lookup: &str) -> Result<Option<(String, String)>, StoreError> {
        self.worker.store.receipt(lookup).await
    }

    // ---- schedules ------------------------------------------------------------------

    /// Every deployed schedule with its state.
    pub async fn schedules(&self) -> Result<Vec<ScheduleView>, StoreError> {
        self.scheduler.list().await
    }

    /// The clock reading of the scheduler's last completed round.
    pub fn schedules_evaluated_at(&self) -> Option<DateTime<Utc>> {
        self.scheduler.evaluated_at()
    }

    /// Pauses or resumes a schedule and wakes the scheduler; `None` when there is no
    /// such schedule.
    pub async fn set_schedule_paused(
        &self,
        workflow: &str,
        schedule: &str,
        paused: bool,
    ) -> Result<Option<ScheduleView>, StoreError> {
        self.scheduler.set_paused(workflow, schedule, paused).await
    }

    /// A schedule's recorded fires, newest first.
    pub async fn schedule_fires(
        &self,
        workflow: &str,
        schedule: &str,
        limit: u32,
    ) -> Result<Vec<FireRecord>, StoreError> {
        self.worker
            .store
            .schedule_fires(workflow, schedule, limit)
            .await
    }
}
