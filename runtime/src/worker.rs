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
use tokio::sync::Notify;
use uuid::Uuid;

use crate::clock::{Clock, ms};
use crate::config::{EngineConfig, MailConfig};
use crate::registry::{Deployment, Registry};
use clearflow_core::Limit;
use clearflow_store::{
    Advance, ArmTimer, Claimed, InstanceEvent, NewHistory, NewInstance, NewTask, ParentLink,
    Started, Store, StoreError, Subscription, TaskOp,
};

/// Where a started instance hangs: the link in its parent, the workflows above it in its
/// chain of starts (root first), and whether it is left running when the parent is
/// cancelled.
pub struct Origin {
    link: ParentLink,
    ancestors: Vec<String>,
    detached: bool,
}

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
    pub(crate) store: Store,
    /// Workflows and calendars.
    pub(crate) registry: Arc<Registry>,
    /// The clock.
    pub(crate) clock: Clock,
    /// Plugins (replaced on reload).
    pub(crate) plugins: RwLock<Arc<dyn PluginRunner>>,
    /// Settings.
    pub(crate) cfg: EngineConfig,
    /// Poked when new work is stored.
    pub(crate) wake: Notify,
    /// This daemon's name in leases.
    pub(crate) node_id: String,
    /// Metrics.
    pub(crate) counters: Counters,
    /// How many times advancing each instance panicked (kept across restarts of the
    /// engine service): the second panic marks the instance failed.
    pub(crate) panics: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// Limits at the door.
    pub(crate) limits: clearflow_core::Limits,
    /// Called before each instance is advanced (fault injection in tests).
    pub(crate) before_advance: Option<BeforeAdvance>,
    /// How notifications are rendered.
    pub(crate) mail: MailConfig,
    /// Poked when mail was queued.
    pub(crate) mail_wake: Arc<Notify>,
    /// Who waits for which instance to settle (`?wait=`).
    pub(crate) settled: crate::settle::Settled,
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
            panics: Default::default(),
            before_advance: None,
            limits: clearflow_core::Limits::default(),
            mail,
            mail_wake: Arc::new(Notify::new()),
            settled: Default::default(),
        }
    }

    /// Replaces the plugins the engine calls (calls in flight finish on the old ones).
    pub fn set_plugins(&self, plugins: Arc<dyn PluginRunner>) {
        *self.plugins.write().expect("lock") = plugins;
    }

    /// The notifier the mailer waits on (the engine pokes it after queuing mail).
    pub fn mail_wake(&self) -> Arc<Notify> {
        self.mail_wake.clone()
    }

    /// Its counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Wakes the engine for work stored behind its back (benchmarks).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// The engine's clock reading.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Runs the engine service under supervision until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let (_, handle) = crate::service::supervise(self, shutdown);
        let _ = handle.await;
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
            let wf = self
                .registry
                .version(&c.def_hash, &self.store)
                .await
                .map_err(|e| e.to_string());
            jobs.push((c, wf));
        }
        // One deployment for the whole round, from the pure phase to the commit.
        let deployment = self.registry.deployment();
        let (batch, steps) = match self.advance_all(jobs, &deployment, now).await {
            Ok(done) => done,
            Err(p) => {
                // Nothing is committed: the claims go back, and the engine service
                // restarts; the instance fails for good if it panics again.
                if let Err(r) = self.store.release(&ids).await {
                    tracing::warn!(error = %r, "releasing claims failed; they expire with their lease");
                }
                panic!("advancing instance {} panicked: {}", p.instance, p.message);
            }
        };
        let mut batch_out = Vec::with_capacity(batch.len());
        for done in batch {
            batch_out.push(self.resolve_mails(done, &deployment, now).await);
        }
        let batch = batch_out;
        // Stamped with the time of the commit, not the round's start: `updated_at` and
        // `ended_at` say when the change became real, after the advance and the mail
        // rendering of the whole batch.
        match self.store.commit(&batch, ms(self.clock.now())).await {
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
                self.settled.fire(batch.iter().map(|a| a.id.as_str()));
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
        deployment: &Arc<Deployment>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Advanced>, u64), Panicked> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunks = cores.min(jobs.len().div_ceil(MIN_CHUNK)).max(1);
        let per = jobs.len().div_ceil(chunks);
        let mut handles = Vec::with_capacity(chunks);
        let mut jobs = jobs.into_iter();
        for _ in 0..chunks {
            let chunk: Vec<_> = jobs.by_ref().take(per).collect();
            let this = Arc::clone(self);
            let deployment = deployment.clone();
            handles.push(tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|(c, wf)| {
                        // The engine is pure and total, so a panic is a bug; it is
                        // contained to the instance that caused it.
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            this.advance(&c, wf, &deployment, now)
                        }))
                        .map_err(|p| Box::new((c, crate::service::payload_message(&*p))))
                    })
                    .collect::<Vec<_>>()
            }));
        }
        let mut batch = Vec::new();
        let mut steps = 0;
        let mut first_panic = None;
        for h in handles {
            let done = match h.await {
                Ok(done) => done,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            for result in done {
                match result {
                    Ok(done) => {
                        steps += done.steps;
                        batch.push(done);
                    }
                    Err(panicked) => {
                        let (c, message) = *panicked;
                        let count = {
                            let mut panics = self.panics.lock().expect("lock");
                            let n = panics.entry(c.id.clone()).or_default();
                            *n += 1;
                            *n
                        };
                        tracing::error!(instance = %c.id, panic = %message, count, "advancing the instance panicked");
                        if count >= 2 {
                            self.panics.lock().expect("lock").remove(&c.id);
                            batch.push(Advanced {
                                adv: failed(
                                    &c,
                                    format!("the engine panicked twice advancing this instance: {message}"),
                                ),
                                steps: 0,
                                mails: Vec::new(),
                            });
                        } else if first_panic.is_none() {
                            first_panic = Some((c.id, message));
                        }
                    }
                }
            }
        }
        if let Some((instance, message)) = first_panic {
            Err(Panicked { instance, message })
        } else {
            Ok((batch, steps))
        }
    }

    /// Applies one claimed instance's due events. Never fails: a broken instance is
    /// marked failed with the reason, so one bad row cannot stop the others.
    fn advance(
        &self,
        c: &Claimed,
        wf: Result<Arc<Workflow>, String>,
        deployment: &Deployment,
        now: DateTime<Utc>,
    ) -> Advanced {
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
                return Advanced {
                    adv: failed(c, error),
                    steps: 0,
                    mails: Vec::new(),
                };
            }
        };
        if let Some(hook) = &self.before_advance {
            hook(&wf.id, &c.id);
        }
        let calendars = deployment.calendars();
        let env = engine::Env::with_limits(now, calendars, &self.limits);
        let mut sliced = false;
        let mut steps = 0u64;
        let mut mails = Vec::new();
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
                sliced |= t.sliced;
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
                        &wf, &mut inst, c, effect, &actor, &env, &mut adv, &mut mails, &mut queue,
                    );
                }
            }
        }
        if sliced && !inst.ended() {
            // The step budget ran out with tokens ready: the instance continues in a
            // later round, after the others due now.
            adv.notify.push(InstanceEvent {
                instance: c.id.clone(),
                payload: serde_json::to_string(&Event::Continue).expect("event serialises"),
            });
        }
        if let engine::Status::Cancelled { reason } = &inst.status {
            let event = Event::Cancel {
                reason: format!(
                    "the instance that started it ({}) was cancelled: {reason}",
                    c.id
                ),
            };
            adv.cancel_children = Some(serde_json::to_string(&event).expect("event serialises"));
        }
        let rows = c.history_rows.max(0) as u64 + adv.history.len() as u64;
        if let Err(e) = self.limits.check(Limit::HistoryRows, rows) {
            tracing::error!(instance = %c.id, "{e}");
            return Advanced {
                adv: failed(c, e.to_string()),
                steps,
                mails: Vec::new(),
            };
        }
        adv.state = serde_json::to_string(&inst).expect("instance state serialises");
        adv.status = inst.status.name().into();
        adv.ended = inst.ended();
        adv.outcome = inst.status.outcome().map(str::to_owned);
        Advanced { adv, steps, mails }
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
        mails: &mut Vec<MailIntent>,
        queue: &mut VecDeque<(engine::Transition, String)>,
    ) {
        match effect {
            Effect::ArmTimer { timer, at } => {
                let payload =
                    serde_json::to_string(&Event::Timer { timer }).expect("event serialises");
                adv.arm.push(ArmTimer {
                    timer: i64::from(timer),
                    due_at: ms(at),
                    payload,
                });
            }
            Effect::CancelTimer { timer } => {
                let before = adv.arm.len();
                adv.arm.retain(|t| t.timer != i64::from(timer));
                if adv.arm.len() == before {
                    adv.cancel.push(i64::from(timer));
                }
            }
            Effect::Subscribe { name, key } => {
                let sub = Subscription { name, key };
                adv.unsubscribe.retain(|s| *s != sub);
                adv.subscribe.push(sub);
            }
            Effect::Unsubscribe { name, key } => {
                let sub = Subscription { name, key };
                let before = adv.subscribe.len();
                adv.subscribe.retain(|s| *s != sub);
                if adv.subscribe.len() == before {
                    adv.unsubscribe.push(sub);
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
                })
                // An output nested deeper than the limit could be stored but never read
                // back; it is refused here like any other invalid output.
                .and_then(|out| {
                    match clearflow_core::check_json_value(&out, &self.limits) {
                        Ok(()) => Ok(out),
                        Err(e) => Err(PluginFailure {
                            class: "output_invalid".into(),
                            message: e.to_string(),
                            retryable: false,
                        }),
                    }
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
                detached,
            } => {
                let started = c.children_started.max(0) as u64 + adv.children_started() as u64 + 1;
                let origin = Origin {
                    link: ParentLink {
                        instance: inst.id.clone(),
                        link: link.clone(),
                        seq: i64::from(seq),
                    },
                    ancestors: c.ancestors.iter().cloned().chain([wf.id.clone()]).collect(),
                    detached,
                };
                let tree = self
                    .limits
                    .check(Limit::ChildrenPerInstance, started)
                    .map_err(|e| StartError::Invalid(e.to_string()))
                    .and_then(|()| self.tree(&workflow, input, Some(origin), actor, None, env.now));
                match tree {
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
                if let Some(parent) = &c.parent {
                    let event = Event::LinkEnded {
                        link: parent.link.clone(),
                        seq: parent.seq as u32,
                        outcome,
                        output,
                    };
                    adv.notify.push(InstanceEvent {
                        instance: parent.instance.clone(),
                        payload: serde_json::to_string(&event).expect("event serialises"),
                    });
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
                // Rendered after the pure phase, once the reporter's address and the
                // step's lists are read (see `Worker::resolve_mails`); the history row
                // keeps its place.
                adv.history.push(NewHistory {
                    kind: "mail_queued".into(),
                    step: Some(step.clone()),
                    detail: String::new(),
                    actor: "system".into(),
                });
                mails.push(MailIntent {
                    history: adv.history.len() - 1,
                    workflow: wf.clone(),
                    started_at: inst.started_at,
                    step,
                    template,
                    to,
                    cc,
                    bcc,
                    locale,
                    data,
                });
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
    async fn reporter_skip(
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
            true => match self.store.identity_for(instance).await {
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

    /// Renders the notifications an advance queued, after reading what they need from
    /// the store (the reporter's address, agendas and digests): the async phase after
    /// the pure one, before the commit.
    async fn resolve_mails(
        &self,
        done: Advanced,
        deployment: &Deployment,
        now: DateTime<Utc>,
    ) -> Advance {
        let Advanced { mut adv, mails, .. } = done;
        for m in mails {
            if let Some(note) = self.reporter_skip(&adv.id, &m.to, &m.cc, &m.bcc).await {
                let h = &mut adv.history[m.history];
                h.kind = "mail_skipped".into();
                h.detail = json!({ "template": m.template, "reason": note }).to_string();
                continue;
            }
            // Agendas and digests: the step's lists, read from the store now.
            let mut data = m.data;
            let mut list_error = None;
            if let Some(clearflow_core::workflow::NodeKind::Notify(n)) =
                m.workflow.node_by_id(&m.step).map(|n| &n.kind)
                && !n.lists.is_empty()
            {
                match crate::digest::fill(&self.store, &self.registry, &n.lists, now).await {
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
                instance: &adv.id,
                workflow: &m.workflow.id,
                started_at: m.started_at,
                step: &m.step,
                template: &m.template,
                to: &m.to,
                cc: &m.cc,
                bcc: &m.bcc,
                locale: m.locale.as_deref(),
                data: &data,
            };
            let mut mail = crate::mailer::render(&self.mail, deployment, &req, now);
            if let Some(e) = list_error {
                // Queued as a dead letter with the reason, like a template that fails.
                mail.subject = format!("[not rendered] {}", m.template);
                mail.text = format!("reading the lists of the notification failed: {e}");
            }
            if let Some(reason) = crate::mailer::unsendable(&mail) {
                tracing::error!(instance = %adv.id, step = %m.step, "notification cannot be sent: {reason}");
            }
            adv.history[m.history].detail = json!({ "mail": mail.id, "message_id": mail.message_id, "template": m.template, "locale": mail.locale }).to_string();
            adv.mails.push(mail);
        }
        adv
    }

    /// Builds the rows for a new instance of `workflow` and, recursively, the instances
    /// it starts concurrently (`on_start`), all to be inserted in one transaction.
    pub fn tree(
        &self,
        workflow: &str,
        input: Value,
        origin: Option<Origin>,
        actor: &str,
        idempotency_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<NewInstance>, StartError> {
        let catalog = self.registry.catalog();
        let start = serde_json::to_string(&Event::Start).expect("event serialises");
        let mut out = Vec::new();
        let mut pending = vec![(workflow.to_owned(), input, origin, idempotency_key)];
        while let Some((workflow, input, origin, key)) = pending.pop() {
            let ancestors = origin
                .as_ref()
                .map_or_else(Vec::new, |o| o.ancestors.clone());
            let depth = ancestors.len() as u64 + 1;
            if let Err(e) = self.limits.check(Limit::StartDepth, depth) {
                return Err(StartError::Invalid(format!(
                    "{e}: starting `{workflow}` after {}",
                    ancestors.join(" → ")
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
                    detached,
                } = e
                {
                    let origin = Origin {
                        link: ParentLink {
                            instance: id.clone(),
                            link,
                            seq: i64::from(seq),
                        },
                        ancestors: ancestors.iter().cloned().chain([wf.id.clone()]).collect(),
                        detached,
                    };
                    pending.push((workflow, input, Some(origin), None));
                }
            }
            out.push(NewInstance {
                case_number: inst
                    .data
                    .get("input")
                    .and_then(|i| i.get("case_number"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                id,
                workflow: wf.id.clone(),
                def_hash: wf.hash.clone(),
                state: serde_json::to_string(&inst).expect("instance state serialises"),
                detached: origin.as_ref().is_some_and(|o| o.detached),
                parent: origin.map(|o| o.link),
                ancestors,
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

/// One instance advanced by the pure phase: what to commit, the steps it took, and the
/// notifications still to render.
struct Advanced {
    adv: Advance,
    steps: u64,
    mails: Vec<MailIntent>,
}

/// A notification the engine queued, rendered in the async phase before the commit.
struct MailIntent {
    /// Its `mail_queued` row in the advance's history.
    history: usize,
    workflow: Arc<Workflow>,
    started_at: DateTime<Utc>,
    step: String,
    template: String,
    to: Vec<String>,
    cc: Vec<String>,
    bcc: Vec<String>,
    locale: Option<String>,
    data: Value,
}

/// An instance's advance panicked (for the first time).
struct Panicked {
    instance: String,
    message: String,
}

/// The advance that ends `c` as failed for `error`, its state as it was; the instance
/// that started it hears that it failed, so a step awaiting it does not hang.
fn failed(c: &Claimed, error: String) -> Advance {
    let notify = c
        .parent
        .iter()
        .map(|p| InstanceEvent {
            instance: p.instance.clone(),
            payload: serde_json::to_string(&Event::LinkEnded {
                link: p.link.clone(),
                seq: p.seq as u32,
                outcome: "failed".into(),
                output: json!({ "error": error }),
            })
            .expect("event serialises"),
        })
        .collect();
    Advance {
        notify,
        id: c.id.clone(),
        version: c.version,
        consumed: c.events.iter().map(|e| e.id).collect(),
        state: c.state.clone(),
        status: "failed".into(),
        ended: true,
        outcome: Some("failed".into()),
        history: vec![NewHistory {
            kind: "instance_failed".into(),
            step: None,
            detail: json!({ "error": error }).to_string(),
            actor: "system".into(),
        }],
        ..Advance::default()
    }
}

/// A hook run before each instance is advanced, with its workflow and instance ids.
pub type BeforeAdvance = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl crate::service::Service for Worker {
    fn name(&self) -> &'static str {
        "engine"
    }
    fn poll(&self) -> Duration {
        Duration::from_millis(self.cfg.poll_ms.max(10))
    }
    fn wake(&self) -> &Notify {
        &self.wake
    }
    fn clock(&self) -> &Clock {
        &self.clock
    }
    async fn round(self: &Arc<Self>) -> Result<crate::service::Next, String> {
        use crate::service::Next;
        if Worker::round(self).await.map_err(|e| e.to_string())? > 0 {
            return Ok(Next::Now);
        }
        let next = self
            .store
            .next_wake()
            .await
            .ok()
            .flatten()
            .and_then(DateTime::from_timestamp_millis);
        Ok(Next::Idle(next))
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
