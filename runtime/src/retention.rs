//! Retention of closed cases (保存期限): what to do with each case — wait, warn, delete —
//! decided by a pure function of its facts, the configuration and the clock, and the sweep
//! that carries those decisions out.
//!
//! A case is a root instance with every instance started from it. It is closed when all
//! of them have ended, and expires `keep` after the last one ended (counted in the
//! configured time zone, months and years by the calendar). `warn_before` its expiry the
//! configured recipients get a warning by mail, queued with an audit record in one
//! transaction. At expiry, and never sooner than `warn_before` after its warning went out,
//! the case is deleted — instances, history, tasks, mail, receipt codes, sealed identities
//! — in one transaction with a `retention.deleted` audit record that names every deleted
//! instance and counts the rows. A case is not deleted while a message of it waits to be
//! sent, while its warning is undelivered, or while it is on hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;

use crate::clock::{from_ms, ms};
use crate::config::{Keep, RetentionConfig};
use crate::mailer::{self, Request};
use crate::worker::Worker;
use clearflow_store::retention::{CaseFacts, Cases, NotDeleted};
use clearflow_store::{AuditEvent, StoreError};

/// The actor of retention's audit records.
pub const ACTOR: &str = "retention";

/// What is due for a case at a given moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// An instance of the case still runs.
    Open,
    /// The case's workflow is kept forever.
    Forever,
    /// On hold: kept until the hold is released.
    Held {
        /// When it would otherwise expire.
        expires_at: DateTime<Utc>,
    },
    /// Nothing before the warning.
    Wait {
        /// When the warning goes out.
        warn_at: DateTime<Utc>,
        /// When the case expires.
        expires_at: DateTime<Utc>,
    },
    /// The warning goes out now.
    Warn {
        /// The expiry it announces.
        expires_at: DateTime<Utc>,
    },
    /// Warned; deleted from `delete_at`, once its mail is delivered.
    Warned {
        /// The earliest deletion.
        delete_at: DateTime<Utc>,
        /// The expiry.
        expires_at: DateTime<Utc>,
    },
    /// Deleted now.
    Delete {
        /// The expiry.
        expires_at: DateTime<Utc>,
    },
    /// Due for deletion, but something needs an administrator first.
    Blocked {
        /// What.
        reason: String,
    },
}

/// Decides what is due for `case` at `now`.
pub fn decide(cfg: &RetentionConfig, case: &CaseFacts, now: DateTime<Utc>) -> Decision {
    let Some(ended) = case.ended_at() else {
        return Decision::Open;
    };
    let Keep::For(keep) = cfg.keep_for(&case.workflow) else {
        return Decision::Forever;
    };
    let add = |at: DateTime<Utc>, span: &clearflow_time::Span| {
        clearflow_time::add(at, span, cfg.timezone, None).map(|d| d.at)
    };
    let back = clearflow_time::Span::new(-cfg.warn_before.amount(), cfg.warn_before.unit());
    let (expires_at, warn_at) =
        match add(from_ms(ended), &keep).and_then(|e| Ok((e, add(e, &back)?))) {
            Ok(t) => t,
            Err(e) => {
                return Decision::Blocked {
                    reason: format!("the expiry cannot be computed: {e}"),
                };
            }
        };
    if case.hold.is_some() {
        return Decision::Held { expires_at };
    }
    // A warning that announced an earlier expiry than today's (the period was made
    // longer) is outdated: a new one goes out before the new expiry.
    let warned = case
        .warned_at
        .filter(|_| case.announced_expiry.is_none_or(|a| a >= ms(expires_at)));
    let Some(warned_at) = warned else {
        return if now >= warn_at {
            Decision::Warn { expires_at }
        } else {
            Decision::Wait {
                warn_at,
                expires_at,
            }
        };
    };
    let delete_at = match add(from_ms(warned_at), &cfg.warn_before) {
        Ok(after_warning) => expires_at.max(after_warning),
        Err(_) => expires_at,
    };
    if now < delete_at {
        return Decision::Warned {
            delete_at,
            expires_at,
        };
    }
    match case.warning_status.as_deref() {
        Some("sent") if case.queued_mail == 0 => Decision::Delete { expires_at },
        Some("dead") => Decision::Blocked {
            reason: "its expiry warning could not be delivered; retry it with `clearflow mail retry` (or put the case on hold)".into(),
        },
        // The warning or another message of the case is still on its way.
        _ => Decision::Warned {
            delete_at,
            expires_at,
        },
    }
}

/// The warning's template must exist and read only what a warning provides
/// (`retention` and the names every message has). Checked at start and on reload.
pub fn check_template(
    cfg: &RetentionConfig,
    templates: Option<&clearflow_templates::Templates>,
) -> Result<(), Vec<String>> {
    if !cfg.enabled() {
        return Ok(());
    }
    let Some(templates) = templates else {
        return Err(vec!["no templates are loaded".into()]);
    };
    let provided = clearflow_templates::ALWAYS_PROVIDED
        .iter()
        .copied()
        .chain(["retention"])
        .map(str::to_owned)
        .collect();
    templates.check(&cfg.template, &provided)
}

/// Counters for metrics.
#[derive(Default)]
pub struct Counters {
    /// Warnings queued.
    pub warned: AtomicU64,
    /// Cases deleted.
    pub deleted: AtomicU64,
    /// Cases due for deletion that need an administrator.
    pub blocked: AtomicU64,
    /// Clock time (ms) of the last completed sweep; -1 before the first.
    pub swept_at: AtomicI64,
}

/// The retention sweeper.
pub struct Retention {
    worker: Arc<Worker>,
    cfg: RetentionConfig,
    /// Metrics.
    pub(crate) counters: Counters,
    /// Poked to sweep now.
    pub(crate) wake: Notify,
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    /// Cases looked at.
    pub cases: u64,
    /// Warnings queued.
    pub warned: u64,
    /// Cases deleted.
    pub deleted: u64,
    /// Cases due for deletion that need an administrator.
    pub blocked: u64,
}

impl Retention {
    /// A sweeper for `cfg`.
    pub fn new(worker: Arc<Worker>, cfg: RetentionConfig) -> Retention {
        let counters = Counters::default();
        counters.swept_at.store(-1, Ordering::Relaxed);
        Retention {
            worker,
            cfg,
            counters,
            wake: Notify::new(),
        }
    }

    /// One sweep at `now`: every closed case whose warning or deletion is due.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<Sweep, StoreError> {
        let mut out = Sweep::default();
        let Some(cutoff) = self.cutoff(now) else {
            return Ok(out);
        };
        let store = &self.worker.store;
        let mut cases = Cases::ended_before(ms(cutoff));
        loop {
            let page = cases.next_page(store).await?;
            if page.is_empty() {
                break;
            }
            for case in page {
                out.cases += 1;
                match decide(&self.cfg, &case, now) {
                    Decision::Warn { expires_at } => {
                        out.warned += u64::from(self.warn(&case, expires_at, now).await?);
                    }
                    Decision::Delete { expires_at } => {
                        out.deleted += u64::from(self.delete(&case, expires_at, now).await?);
                    }
                    Decision::Blocked { reason } => {
                        tracing::error!(case = %case.root, workflow = %case.workflow, "closed case not deleted: {reason}");
                        out.blocked += 1;
                    }
                    _ => {}
                }
            }
        }
        let c = &self.counters;
        c.warned.fetch_add(out.warned, Ordering::Relaxed);
        c.deleted.fetch_add(out.deleted, Ordering::Relaxed);
        c.blocked.store(out.blocked, Ordering::Relaxed);
        c.swept_at.store(ms(now), Ordering::Release);
        if out.warned + out.deleted + out.blocked > 0 {
            tracing::info!(
                cases = out.cases,
                warned = out.warned,
                deleted = out.deleted,
                blocked = out.blocked,
                "retention sweep"
            );
        }
        Ok(out)
    }

    /// The latest end a case can have and still be due for its warning at `now`: the
    /// most generous over the configured periods, with a margin for months of unequal
    /// length (the decision itself is exact). None when nothing can expire.
    fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let periods = std::iter::once(self.cfg.keep).chain(self.cfg.workflows.values().copied());
        periods
            .filter_map(|k| match k {
                Keep::For(span) => Some(span),
                Keep::Never => None,
            })
            .filter_map(|span| {
                let back = clearflow_time::Span::new(-span.amount(), span.unit());
                let start =
                    clearflow_time::add(now, &self.cfg.warn_before, self.cfg.timezone, None)
                        .ok()?;
                clearflow_time::add(start.at, &back, self.cfg.timezone, None)
                    .ok()
                    .map(|d| d.at)
            })
            .max()
            .map(|t| t + chrono::TimeDelta::days(4))
    }

    async fn warn(
        &self,
        case: &CaseFacts,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let ended_at = case.ended_at().map(from_ms);
        let data = json!({
            "retention": {
                "case": case.root,
                "workflow": case.workflow,
                "instances": case.members.len(),
                "ended_at": ended_at.map(|t| t.to_rfc3339()),
                "expires_at": expires_at.to_rfc3339(),
                "expires_on": expires_at.with_timezone(&self.cfg.timezone).date_naive().to_string(),
            }
        });
        let mail = mailer::render(
            &self.worker.mail,
            &self.worker.registry.deployment(),
            &Request {
                instance: &case.root,
                workflow: &case.workflow,
                started_at: from_ms(case.started_at),
                step: "retention",
                template: &self.cfg.template,
                to: &self.cfg.notify,
                cc: &[],
                bcc: &[],
                locale: None,
                data: &data,
            },
            now,
        );
        let event = AuditEvent {
            at: ms(now),
            kind: "retention.warned".into(),
            actor: ACTOR.into(),
            instance_id: Some(case.root.clone()),
            detail: json!({
                "workflow": case.workflow,
                "instances": case.members.iter().map(|m| &m.id).collect::<Vec<_>>(),
                "ended_at": ended_at,
                "expires_at": expires_at,
                "mail": mail.id,
            }),
        };
        let queued = self
            .worker
            .store
            .warn_case(&case.root, ms(expires_at), &mail, &event, ms(now))
            .await?;
        if queued {
            tracing::warn!(case = %case.root, workflow = %case.workflow, expires = %expires_at, "closed case expires; warning queued");
            self.worker.mail_wake.notify_one();
        }
        Ok(queued)
    }

    async fn delete(
        &self,
        case: &CaseFacts,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let event = AuditEvent {
            at: ms(now),
            kind: "retention.deleted".into(),
            actor: ACTOR.into(),
            instance_id: Some(case.root.clone()),
            detail: json!({
                "workflow": case.workflow,
                "instances": case.members,
                "ended_at": case.ended_at().map(from_ms),
                "expires_at": expires_at,
                "warned_at": case.warned_at.map(from_ms),
            }),
        };
        match self.worker.store.delete_case(case, event).await? {
            Ok(deleted) => {
                tracing::info!(case = %case.root, workflow = %case.workflow, instances = deleted.instances, history = deleted.history, "closed case deleted at the end of its retention period");
                Ok(true)
            }
            Err(NotDeleted::Gone) => Ok(false),
            Err(NotDeleted::Changed) => {
                tracing::debug!(case = %case.root, "case changed while it was being deleted; looked at again next sweep");
                Ok(false)
            }
        }
    }
}

impl crate::service::Service for Retention {
    fn name(&self) -> &'static str {
        "retention"
    }
    fn poll(&self) -> Duration {
        Duration::from_secs(self.cfg.every_seconds.max(1))
    }
    fn wake(&self) -> &Notify {
        &self.wake
    }
    fn clock(&self) -> &crate::clock::Clock {
        &self.worker.clock
    }
    fn enabled(&self) -> bool {
        self.cfg.enabled()
    }
    /// Sweeps every `every_seconds` of the clock; does nothing when no case can expire.
    async fn round(self: &Arc<Self>) -> Result<crate::service::Next, String> {
        let now = self.worker.clock.now();
        self.sweep(now).await.map_err(|e| e.to_string())?;
        let every = chrono::TimeDelta::from_std(crate::service::Service::poll(self.as_ref()))
            .unwrap_or_default();
        Ok(crate::service::Next::Idle(Some(now + every)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use clearflow_store::retention::{CaseMember, Hold};

    fn cfg() -> RetentionConfig {
        let mut c = RetentionConfig {
            keep: Keep::For("1y".parse().unwrap()),
            ..RetentionConfig::default()
        };
        c.workflows.insert("digest".into(), Keep::Never);
        c.workflows
            .insert("short".into(), Keep::For("3mo".parse().unwrap()));
        c
    }

    /// Shanghai midnight of a date, in UTC.
    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(y, m, d, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn case(workflow: &str, ended: &[Option<DateTime<Utc>>]) -> CaseFacts {
        CaseFacts {
            root: "r".into(),
            workflow: workflow.into(),
            started_at: 0,
            members: ended
                .iter()
                .enumerate()
                .map(|(i, e)| CaseMember {
                    id: format!("i{i}"),
                    workflow: workflow.into(),
                    ended_at: e.map(ms),
                })
                .collect(),
            queued_mail: 0,
            warned_at: None,
            announced_expiry: None,
            warning_status: None,
            hold: None,
        }
    }

    #[test]
    fn a_case_with_a_running_instance_is_open() {
        let c = case("complaint", &[Some(day(2024, 1, 1)), None]);
        assert_eq!(decide(&cfg(), &c, day(2030, 1, 1)), Decision::Open);
    }

    #[test]
    fn the_period_counts_from_the_last_instance_to_end_in_calendar_years() {
        let c = case(
            "complaint",
            &[Some(day(2024, 2, 29)), Some(day(2024, 3, 1))],
        );
        // One year after 2024-03-01: 2025-03-01; the warning 30 days before.
        assert_eq!(
            decide(&cfg(), &c, day(2025, 1, 1)),
            Decision::Wait {
                warn_at: day(2025, 1, 30),
                expires_at: day(2025, 3, 1)
            }
        );
        assert_eq!(
            decide(&cfg(), &c, day(2025, 1, 30)),
            Decision::Warn {
                expires_at: day(2025, 3, 1)
            }
        );
    }

    #[test]
    fn per_workflow_periods_override_the_default() {
        let short = case("short", &[Some(day(2024, 11, 30))]);
        // Three calendar months from 30 November: 28 February (clamped).
        assert_eq!(
            decide(&cfg(), &short, day(2025, 3, 1)),
            Decision::Warn {
                expires_at: day(2025, 2, 28)
            }
        );
        let kept = case("digest", &[Some(day(2000, 1, 1))]);
        assert_eq!(decide(&cfg(), &kept, day(2030, 1, 1)), Decision::Forever);
    }

    #[test]
    fn deletion_waits_for_expiry_and_a_full_warning_period() {
        let mut c = case("complaint", &[Some(day(2024, 3, 1))]);
        // Warned on time: deleted at expiry once the warning was delivered.
        c.warned_at = Some(ms(day(2025, 1, 30)));
        c.announced_expiry = Some(ms(day(2025, 3, 1)));
        c.warning_status = Some("queued".into());
        let warned = Decision::Warned {
            delete_at: day(2025, 3, 1),
            expires_at: day(2025, 3, 1),
        };
        assert_eq!(decide(&cfg(), &c, day(2025, 2, 28)), warned);
        assert_eq!(
            decide(&cfg(), &c, day(2025, 3, 1)),
            warned,
            "mail not sent yet"
        );
        c.warning_status = Some("sent".into());
        assert_eq!(
            decide(&cfg(), &c, day(2025, 3, 1)),
            Decision::Delete {
                expires_at: day(2025, 3, 1)
            }
        );
        // Other mail of the case still queued: not yet.
        c.queued_mail = 1;
        assert_eq!(decide(&cfg(), &c, day(2025, 3, 1)), warned);
        // Warned late (the daemon was down): deleted 30 days after the warning.
        c.queued_mail = 0;
        c.warned_at = Some(ms(day(2025, 6, 1)));
        assert_eq!(
            decide(&cfg(), &c, day(2025, 6, 30)),
            Decision::Warned {
                delete_at: day(2025, 7, 1),
                expires_at: day(2025, 3, 1)
            }
        );
        assert_eq!(
            decide(&cfg(), &c, day(2025, 7, 1)),
            Decision::Delete {
                expires_at: day(2025, 3, 1)
            }
        );
    }

    #[test]
    fn an_undelivered_warning_or_a_hold_stops_deletion() {
        let mut c = case("complaint", &[Some(day(2024, 3, 1))]);
        c.warned_at = Some(ms(day(2025, 1, 30)));
        c.announced_expiry = Some(ms(day(2025, 3, 1)));
        c.warning_status = Some("dead".into());
        assert!(matches!(
            decide(&cfg(), &c, day(2025, 4, 1)),
            Decision::Blocked { .. }
        ));
        c.hold = Some(Hold {
            reason: "复查中".into(),
            by: "admin".into(),
            at: 0,
        });
        assert_eq!(
            decide(&cfg(), &c, day(2026, 1, 1)),
            Decision::Held {
                expires_at: day(2025, 3, 1)
            }
        );
    }

    #[test]
    fn a_longer_period_outdates_the_warning() {
        let mut c = case("complaint", &[Some(day(2024, 3, 1))]);
        c.warned_at = Some(ms(day(2024, 5, 1)));
        c.announced_expiry = Some(ms(day(2024, 6, 1)));
        c.warning_status = Some("sent".into());
        // The period is now one year: the old warning (for 1 June 2024) does not count.
        assert_eq!(
            decide(&cfg(), &c, day(2024, 7, 1)),
            Decision::Wait {
                warn_at: day(2025, 1, 30),
                expires_at: day(2025, 3, 1)
            }
        );
        assert_eq!(
            decide(&cfg(), &c, day(2025, 2, 1)),
            Decision::Warn {
                expires_at: day(2025, 3, 1)
            }
        );
    }
}
