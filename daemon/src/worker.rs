//! The engine worker: claims instances with due work, runs them forward, commits in batches.
//!
//! One loop per daemon. Each round claims up to `batch_size` instances whose wake time
//! has come (with a lease, so a crashed daemon's claims expire), applies their due
//! events through the pure engine, performs plugin calls in memory (plugins are pure, so
//! a crash before the commit just runs them again), and writes every instance's new
//! state, history, timers, child instances and outbound events in one transaction.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clearflow_core::Workflow;
use clearflow_core::engine::{self, Effect, Event, Instance, PluginFailure};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::clock::{Clock, ms};
use crate::config::{EngineConfig, MailConfig};
use crate::registry::Registry;
use crate::store::{
    Advance, Claimed, NewHistory, NewInstance, NewTask, Started, Store, StoreError, TaskOp,
};

/// Deepest chain of concurrent starts created for one instance.
const MAX_START_DEPTH: usize = 16;

/// Fewest instances per parallel chunk of a round: smaller rounds run on one thread.
const MIN_CHUNK: usize = 8;

/// Who a plugin call is for.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Workflow id.
    pub workflow: String,
    /// Instance id.
    pub instance: String,
    /// Step id.
    pub step: String,
    /// Attempt, from 1.
    pub attempt: u32,
}

/// Runs plugin calls for the engine. Implemented by the WASM plugin host.
pub trait PluginRunner: Send + Sync {
    /// Calls `plugin` with `input`.
    fn call(
        &self,
        plugin: &str,
        inv: &Invocation,
        input: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, PluginFailure>;

    /// The plugins that can be called.
    fn names(&self) -> Vec<String>;
}

/// The runner used when no plugins are configured: every call fails, not retryably.
pub struct NoPlugins;

impl PluginRunner for NoPlugins {
    fn call(
        &self,
        plugin: &str,
        _: &Invocation,
        _: &Value,
        _: Option<Duration>,
    ) -> Result<Value, PluginFailure> {
        Err(PluginFailure {
            class: "unknown_plugin".into(),
            message: format!("no plugin named `{plugin}` is configured"),
            retryable: false,
        })
    }

    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Counters for metrics.
#[derive(Default)]
pub struct Counters {
    /// Steps executed and committed.
    pub steps: std::sync::atomic::AtomicU64,
    /// Commits.
    pub commits: std::sync::atomic::AtomicU64,
    /// Instances advanced.
    pub advances: std::sync::atomic::AtomicU64,
    /// Failed commits.
    pub commit_errors: std::sync::atomic::AtomicU64,
}

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No such workflow is deployed.
    #[error("unknown workflow `{0}`")]
    UnknownWorkflow(String),
    /// The input was refused.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The engine shell.
pub struct Worker {
    /// The store.
    pub store: Store,
    /// Workflows and calendars.
    pub registry: Arc<Registry>,
    /// The clock.
    pub clock: Clock,
    /// Plugins (replaced on reload).
    pub plugins: RwLock<Arc<dyn PluginRunner>>,
    /// Settings.
    pub cfg: EngineConfig,
    /// Poked when new work is stored.
    pub wake: Notify,
    /// This daemon's name in leases.
    pub node_id: String,
    /// Metrics.
    pub counters: Counters,
    /// How notifications are rendered.
    pub mail: MailConfig,
    /// Poked when mail was queued.
    pub mail_wake: Arc<Notify>,
}

impl Worker {
    /// A worker over `store` and `registry`.
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        clock: Clock,
        cfg: EngineConfig,
        mail: MailConfig,
    ) -> Worker {
        let node_id = cfg
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
        Worker {
            store,
            registry,
            clock,
            plugins: RwLock::new(Arc::new(NoPlugins)),
            cfg,
            wake: Notify::new(),
            node_id,
            counters: Counters::default(),
            mail,
            mail_wake: Arc::new(Notify::new()),
        }
    }

    /// Runs until `shutdown` turns true; the round in progress is finished first.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.cfg.poll_ms.max(10));
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.round().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "engine round failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            }
            let next = self
                .store
                .next_wake()
                .await
                .ok()
                .flatten()
                .and_then(DateTime::from_timestamp_millis);
            crate::clock::idle(&self.clock, next, &self.wake, poll, &mut shutdown).await;
        }
        tracing::info!("engine stopped");
    }

    /// One round: claim, advance, commit. Returns how many instances were advanced.
    ///
    /// The claimed instances are advanced on the blocking pool in as many chunks as
    /// there are cores (plugin calls are synchronous WASM calls), then committed
    /// together in one transaction, in claim order.
    pub async fn round(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let lease = (self.cfg.lease_seconds * 1000) as i64;
        let claimed = self
            .store
            .claim(&self.node_id, ms(now), lease, self.cfg.batch_size)
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = claimed.iter().map(|c| c.id.clone()).collect();
        // Versions missing from memory are compiled again from the store (async).
        let mut jobs = Vec::with_capacity(claimed.len());
        for c in claimed {
            let wf = self.registry.version(&c.def_hash, &self.store).await;
            jobs.push((c, wf));
        }
        let (batch, steps) = self.advance_all(jobs, now).await;
        match self.store.commit(&batch, ms(now)).await {
            Ok(()) => {
                use std::sync::atomic::Ordering::Relaxed;
                self.counters.steps.fetch_add(steps, Relaxed);
                self.counters.commits.fetch_add(1, Relaxed);
                self.counters
                    .advances
                    .fetch_add(batch.len() as u64, Relaxed);
                if batch.iter().any(|a| !a.mails.is_empty()) {
                    self.mail_wake.notify_one();
                }
                Ok(batch.len())
            }
            Err(e) => {
                self.counters
                    .commit_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Nothing was written; give the claims back so the work is retried.
                if let Err(r) = self.store.release(&ids).await {
                    tracing::warn!(error = %r, "releasing claims failed; they expire with their lease");
                }
                Err(e)
            }
        }
    }

    /// Advances `jobs` in parallel chunks on the blocking pool; the result keeps their order.
    async fn advance_all(
        self: &Arc<Self>,
        jobs: Vec<(Claimed, Result<Arc<Workflow>, String>)>,
        now: DateTime<Utc>,
    ) -> (Vec<Advance>, u64) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunks = cores.min(jobs.len().div_ceil(MIN_CHUNK)).max(1);
        let per = jobs.len().div_ceil(chunks);
        let mut handles = Vec::with_capacity(chunks);
        let mut jobs = jobs.into_iter();
        for _ in 0..chunks {
            let chunk: Vec<_> = jobs.by_ref().take(per).collect();
            let this = Arc::clone(self);
            handles.push(tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|(c, wf)| this.advance(c, wf, now))
                    .collect::<Vec<_>>()
            }));
        }
        let mut batch = Vec::new();
        let mut steps = 0;
        for h in handles {
            match h.await {
                Ok(done) => {
                    for (adv, n) in done {
                        steps += n;
                        batch.push(adv);
                    }
                }
                // The engine is pure and total; a panic is a bug, not a state to store.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        (batch, steps)
    }

    /// Applies one claimed instance's due events. Never fails: a broken instance is
    /// marked failed with the reason, so one bad row cannot stop the others.
    fn advance(
        &self,
        c: Claimed,
        wf: Result<Arc<Workflow>, String>,
        now: DateTime<Utc>,
    ) -> (Advance, u64) {
        let mut adv = Advance {
            id: c.id.clone(),
            version: c.version,
            consumed: c.events.iter().map(|e| e.id).collect(),
            ..Advance::default()
        };
        let loaded = match wf {
            Ok(wf) => serde_json::from_str::<Instance>(&c.state)
                .map(|inst| (wf, inst))
                .map_err(|e| format!("stored state of instance {} is unreadable: {e}", c.id)),
            Err(e) => Err(e),
        };
        let (wf, mut inst) = match loaded {
            Ok(x) => x,
            Err(error) => {
                tracing::error!(instance = %c.id, %error, "instance cannot run");
                adv.state = c.state.clone();
                adv.status = "failed".into();
                adv.ended = true;
                adv.outcome = Some("failed".into());
                adv.history.push(NewHistory {
                    kind: "instance_failed".into(),
                    step: None,
                    detail: json!({ "error": error }).to_string(),
                    actor: "system".into(),
                });
                return (adv, 0);
            }
        };
        let calendars = self.registry.calendars();
        let env = engine::Env {
            now,
            calendars: &calendars,
        };
        let mut steps = 0u64;
        let mut queue: VecDeque<(engine::Transition, String)> = VecDeque::new();
        for ev in &c.events {
            match serde_json::from_str::<Event>(&ev.payload) {
                Ok(event) => {
                    queue.push_back((engine::apply(&wf, &mut inst, event, &env), ev.actor.clone()))
                }
                Err(e) => adv.history.push(NewHistory {
                    kind: "event_rejected".into(),
                    step: None,
                    detail: json!({ "error": format!("unreadable event: {e}") }).to_string(),
                    actor: ev.actor.clone(),
                }),
            }
            while let Some((t, actor)) = queue.pop_front() {
                steps += u64::from(t.steps);
                for h in t.history {
                    if h.kind == "deadline_provisional" {
                        crate::provisional::warn(&c.id, &h);
                    }
                    adv.history.push(NewHistory {
                        kind: h.kind,
                        step: h.step,
                        detail: h.detail.to_string(),
                        actor: actor.clone(),
                    });
                }
                for effect in t.effects {
                    self.effect(
                        &wf, &mut inst, &c, effect, &actor, &env, &mut adv, &mut queue,
                    );
                }
            }
        }
        adv.state = serde_json::to_string(&inst).expect("instance state serialises");
        adv.status = inst.status.name().into();
        adv.ended = inst.ended();
        adv.outcome = inst.status.outcome().map(str::to_owned);
        (adv, steps)
    }

    #[allow(clippy::too_many_arguments)]
    fn effect(
        &self,
        wf: &Arc<Workflow>,
        inst: &mut Instance,
        c: &Claimed,
        effect: Effect,
        actor: &str,
        env: &engine::Env<'_>,
        adv: &mut Advance,
        queue: &mut VecDeque<(engine::Transition, String)>,
    ) {
        match effect {
            Effect::ArmTimer { timer, at } => {
                let payload =
                    serde_json::to_string(&Event::Timer { timer }).expect("event serialises");
                adv.arm.push((i64::from(timer), ms(at), payload));
            }
            Effect::CancelTimer { timer } => {
                let before = adv.arm.len();
                adv.arm.retain(|(t, _, _)| *t != i64::from(timer));
                if adv.arm.len() == before {
                    adv.cancel.push(i64::from(timer));
                }
            }
            Effect::Subscribe { name, key } => {
                adv.unsubscribe
                    .retain(|s| *s != (name.clone(), key.clone()));
                adv.subscribe.push((name, key));
            }
            Effect::Unsubscribe { name, key } => {
                let before = adv.subscribe.len();
                adv.subscribe.retain(|s| *s != (name.clone(), key.clone()));
                if adv.subscribe.len() == before {
                    adv.unsubscribe.push((name, key));
                }
            }
            Effect::CallPlugin {
                token,
                step,
                plugin,
                input,
                attempt,
                timeout_ms,
            } => {
                let inv = Invocation {
                    workflow: wf.id.clone(),
                    instance: inst.id.clone(),
                    step,
                    attempt,
                };
                let runner = self.plugins.read().expect("lock").clone();
                let timeout = timeout_ms.map(Duration::from_millis);
                // This runs on the blocking pool (see `advance_all`).
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runner.call(&plugin, &inv, &input, timeout)
                }))
                .unwrap_or_else(|_| {
                    Err(PluginFailure {
                        class: "host_panic".into(),
                        message: "the plugin host panicked".into(),
                        retryable: true,
                    })
                });
                let t = engine::apply(
                    wf,
                    inst,
                    Event::PluginDone {
                        token,
                        attempt,
                        result,
                    },
                    env,
                );
                queue.push_back((t, format!("plugin:{plugin}")));
            }
            Effect::StartInstance {
                workflow,
                input,
                link,
                seq,
            } => {
                match self.tree(
                    &workflow,
                    input,
                    Some((inst.id.clone(), link.clone(), i64::from(seq))),
                    actor,
                    None,
                    env.now,
                ) {
                    Ok(tree) => adv.children.extend(tree),
                    Err(e) => {
                        // The link ends at once as failed, so a step awaiting it does not hang.
                        let t = engine::apply(
                            wf,
                            inst,
                            Event::LinkEnded {
                                link,
                                seq,
                                outcome: "failed".into(),
                                output: json!({ "error": e.to_string() }),
                            },
                            env,
                        );
                        queue.push_back((t, "system".into()));
                    }
                }
            }
            Effect::Ended { outcome, output } => {
                if let Some((parent, link, seq)) = &c.parent {
                    let event = Event::LinkEnded {
                        link: link.clone(),
                        seq: *seq as u32,
                        outcome,
                        output,
                    };
                    adv.notify = Some((
                        parent.clone(),
                        serde_json::to_string(&event).expect("event serialises"),
                    ));
                }
            }
            Effect::QueueMail {
                step,
                template,
                to,
                cc,
                bcc,
                locale,
                data,
            } => {
                if let Some(note) = self.reporter_skip(&inst.id, &to, &cc, &bcc) {
                    adv.history.push(NewHistory {
                        kind: "mail_skipped".into(),
                        step: Some(step),
                        detail: json!({ "template": template, "reason": note }).to_string(),
                        actor: "system".into(),
                    });
                    return;
                }
                // Agendas and digests: the step's lists, read from the store now.
                let mut data = data;
                let mut list_error = None;
                if let Some(clearflow_core::workflow::NodeKind::Notify(n)) =
                    wf.node_by_id(&step).map(|n| &n.kind)
                    && !n.lists.is_empty()
                {
                    match crate::digest::fill(&self.store, &self.registry, &n.lists, env.now) {
                        Ok(lists) => {
                            if !data.is_object() {
                                data = json!({});
                            }
                            if let Some(obj) = data.as_object_mut() {
                                obj.extend(lists);
                            }
                        }
                        Err(e) => list_error = Some(e),
                    }
                }
                let req = crate::mailer::Request {
                    instance: &inst.id,
                    workflow: &wf.id,
                    started_at: inst.started_at,
                    step: &step,
                    template: &template,
                    to: &to,
                    cc: &cc,
                    bcc: &bcc,
                    locale: locale.as_deref(),
                    data: &data,
                };
                let mut mail = crate::mailer::render(&self.mail, &self.registry, &req, env.now);
                if let Some(e) = list_error {
                    // Queued as a dead letter with the reason, like a template that fails.
                    mail.subject = format!("[not rendered] {template}");
                    mail.text = format!("reading the lists of the notification failed: {e}");
                }
                if let Some(reason) = crate::mailer::unsendable(&mail) {
                    tracing::error!(instance = %inst.id, %step, "notification cannot be sent: {reason}");
                }
                adv.history.push(NewHistory {
                    kind: "mail_queued".into(),
                    step: Some(step),
                    detail: json!({ "mail": mail.id, "message_id": mail.message_id, "template": template, "locale": mail.locale }).to_string(),
                    actor: "system".into(),
                });
                adv.mails.push(mail);
            }
            Effect::CreateTask {
                task,
                token,
                step,
                title,
                role,
                assignee,
                due,
                provisional,
                priority,
                follow_up,
            } => adv.tasks.push(TaskOp::Create(NewTask {
                task_no: i64::from(task),
                token: i64::from(token),
                step,
                workflow: wf.id.clone(),
                title,
                role,
                assignee,
                priority: i64::from(priority),
                due_at: due.map(ms),
                follow_up_at: follow_up.map(ms),
                provisional,
            })),
            Effect::CloseTask { task } => adv.tasks.push(TaskOp::Close(i64::from(task))),
            Effect::ReassignTask { task, role } => {
                adv.tasks.push(TaskOp::Reassign(i64::from(task), role))
            }
            Effect::ReopenTask { task, .. } => adv.tasks.push(TaskOp::Reopen(i64::from(task))),
            Effect::RescheduleTask {
                task,
                due,
                provisional,
            } => adv
                .tasks
                .push(TaskOp::Reschedule(i64::from(task), ms(due), provisional)),
        }
    }

    /// Why a notification `to: reporter` is not queued, if it is not: the report is
    /// anonymous (or gave no address), or the reporter is not the only recipient. A
    /// store failure here queues the message anyway; the sender checks again and makes a
    /// dead letter if there is no address.
    fn reporter_skip(
        &self,
        instance: &str,
        to: &[String],
        cc: &[String],
        bcc: &[String],
    ) -> Option<&'static str> {
        match crate::mailer::reporter_recipient(to, cc, bcc)? {
            false => Some(
                "`reporter` must be the only recipient: the reporter's address is shown to no one else",
            ),
            // On the blocking pool, within the runtime (see `advance_all`).
            true => match tokio::runtime::Handle::current()
                .block_on(self.store.identity_for(instance))
            {
                Ok(Some(i)) if i.has_email => None,
                Ok(Some(_)) => {
                    Some("the reporter gave no email address or asked not to be written to")
                }
                Ok(None) => Some("anonymous report: the reporter cannot be written to"),
                Err(e) => {
                    tracing::warn!(%instance, error = %e, "checking the reporter's identity failed; queuing the message");
                    None
                }
            },
        }
    }

    /// Builds the rows for a new instance of `workflow` and, recursively, the instances
    /// it starts concurrently (`on_start`), all to be inserted in one transaction.
    pub fn tree(
        &self,
        workflow: &str,
        input: Value,
        parent: Option<(String, String, i64)>,
        actor: &str,
        idempotency_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<NewInstance>, StartError> {
        let catalog = self.registry.catalog();
        let start = serde_json::to_string(&Event::Start).expect("event serialises");
        let mut out = Vec::new();
        let mut pending = vec![(workflow.to_owned(), input, parent, idempotency_key, 0usize)];
        while let Some((workflow, input, parent, key, depth)) = pending.pop() {
            if depth > MAX_START_DEPTH {
                return Err(StartError::Invalid(format!(
                    "concurrent starts nest deeper than {MAX_START_DEPTH}"
                )));
            }
            let wf = catalog
                .get(&workflow)
                .ok_or_else(|| StartError::UnknownWorkflow(workflow.clone()))?;
            let id = Uuid::now_v7().to_string();
            let initiator = actor.strip_prefix("user:").map(str::to_owned);
            let (inst, effects) = engine::create(wf, id.clone(), input, initiator, now)
                .map_err(|e| StartError::Invalid(e.to_string()))?;
            for e in effects {
                if let Effect::StartInstance {
                    workflow,
                    input,
                    link,
                    seq,
                } = e
                {
                    pending.push((
                        workflow,
                        input,
                        Some((id.clone(), link, i64::from(seq))),
                        None,
                        depth + 1,
                    ));
                }
            }
            out.push(NewInstance {
                id,
                workflow: wf.id.clone(),
                def_hash: wf.hash.clone(),
                state: serde_json::to_string(&inst).expect("instance state serialises"),
                parent,
                idempotency_key: key,
                start_event: start.clone(),
                actor: actor.to_owned(),
            });
        }
        Ok(out)
    }

    /// Starts an instance (and its concurrent starts) now, in one transaction.
    pub async fn start(
        &self,
        workflow: &str,
        input: Value,
        actor: &str,
        idempotency_key: Option<String>,
    ) -> Result<Started, StartError> {
        let now = self.clock.now();
        let tree = self.tree(workflow, input, None, actor, idempotency_key, now)?;
        let started = self.store.start(&[tree], ms(now)).await?;
        self.wake.notify_one();
        Ok(started.into_iter().next().expect("one tree, one result"))
    }

    /// Sends an event to an instance.
    pub async fn send(&self, id: &str, event: &Event, actor: &str) -> Result<bool, StoreError> {
        let payload = serde_json::to_string(event).expect("event serialises");
        let ok = self
            .store
            .send(id, &payload, actor, ms(self.clock.now()))
            .await?;
        self.wake.notify_one();
        Ok(ok)
    }
}

/// This machine's name, for the default node id `HOST-PID`: `HOSTNAME`, else the
/// kernel's, else `clearflow`.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "clearflow".into())
}
