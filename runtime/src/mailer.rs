//! Mail: rendering notify steps into outbox rows, and the sender that delivers them.
//!
//! A notify step's message is rendered and queued in the same transaction as the step
//! (see `worker.rs`). The sender claims due rows with a lease, delivers them through
//! the configured transport, and records the outcome: sent, retry later with
//! exponential backoff and jitter, or a dead letter with the server's reply. A crash
//! between delivery and recording re-sends the message with the same `Message-ID`.
//!
//! Logs name a message by its outbox id, with the failure's class and SMTP code; never an
//! address, and never the server's reply text (it may quote an address): that is kept in
//! the outbox row, for `clearflow mail list` and the dead-letter view.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::clock::{Clock, ms};
use crate::config::MailConfig;
use crate::registry::Deployment;
use clearflow_store::{Delivery, MailOutcome, NewMail, RecipientDelivery, Store, StoreError};

/// Counters for metrics.
#[derive(Default)]
pub struct MailCounters {
    /// Delivered.
    pub sent: std::sync::atomic::AtomicU64,
    /// Failed temporarily and rescheduled.
    pub retried: std::sync::atomic::AtomicU64,
    /// Given up.
    pub dead: std::sync::atomic::AtomicU64,
}

/// What a notify step asks for, before rendering.
pub struct Request<'a> {
    /// Sending instance.
    pub instance: &'a str,
    /// Its workflow.
    pub workflow: &'a str,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Sending step.
    pub step: &'a str,
    /// Template name.
    pub template: &'a str,
    /// Recipients (`role:NAME`, `user:ID` and `leader:ID` allowed).
    pub to: &'a [String],
    /// Copy.
    pub cc: &'a [String],
    /// Blind copy.
    pub bcc: &'a [String],
    /// Locale asked for.
    pub locale: Option<&'a str>,
    /// Template data.
    pub data: &'a Value,
}

/// Renders a notify step into an outbox row. A message that cannot be rendered or has
/// no recipient is still queued, as a dead letter carrying the reason, so nothing is
/// lost silently.
pub fn render(
    cfg: &MailConfig,
    deployment: &Deployment,
    req: &Request<'_>,
    now: DateTime<Utc>,
) -> NewMail {
    let directory = deployment.directory();
    let expand = |list: &[String]| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in list {
            if let Some(role) = r.strip_prefix("role:") {
                out.extend(directory.members(role).iter().map(|u| u.email.clone()));
            } else if let Some(id) = r.strip_prefix("user:") {
                // A user the directory does not know has no address: nothing is added.
                out.extend(directory.user(id).map(|u| u.email.clone()));
            } else if let Some(id) = r.strip_prefix("leader:") {
                let leader = directory
                    .user(id)
                    .and_then(|u| u.leader.as_deref())
                    .and_then(|l| directory.user(l));
                out.extend(leader.map(|u| u.email.clone()));
            } else {
                out.push(r.clone());
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|a| seen.insert(a.to_ascii_lowercase()));
        out
    };
    let (to, cc, bcc) = (expand(req.to), expand(req.cc), expand(req.bcc));
    let first = to.first().or(cc.first()).or(bcc.first()).cloned();
    let user = first.as_deref().and_then(|a| directory.by_email(a));
    let locale = req
        .locale
        .map(str::to_owned)
        .or_else(|| user.and_then(|u| u.locale.clone()))
        .unwrap_or_else(|| clearflow_templates::DEFAULT_LOCALE.to_owned());
    let mut ctx: Map<String, Value> = match req.data {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    ctx.insert(
        "instance".into(),
        json!({ "id": req.instance, "workflow": req.workflow, "started_at": req.started_at.to_rfc3339() }),
    );
    ctx.insert("step".into(), Value::String(req.step.to_owned()));
    ctx.insert(
        "recipient".into(),
        json!({ "address": first, "name": user.map(|u| u.name.clone()), "locale": locale }),
    );
    let mut case_url = cfg.case_url.replace("{id}", req.instance);
    if let Some(n) = req.data.pointer("/task/number").and_then(Value::as_u64) {
        case_url = format!("{}/tasks/{n}", case_url.trim_end_matches('/'));
    }
    ctx.insert("case_url".into(), Value::String(case_url));
    ctx.insert("status_url".into(), Value::String(cfg.status_url.clone()));
    ctx.insert("now".into(), Value::String(now.to_rfc3339()));
    let id = uuid::Uuid::now_v7().to_string();
    let mut mail = NewMail {
        message_id: clearflow_mail::message_id(&id, &cfg.domain),
        id,
        instance_id: Some(req.instance.to_owned()),
        step: Some(req.step.to_owned()),
        from: cfg.from.clone(),
        to,
        cc,
        bcc,
        subject: String::new(),
        text: String::new(),
        html: None,
        locale: locale.clone(),
    };
    let rendered = match deployment.templates() {
        None => Err("no templates are loaded (is the templates folder missing?)".to_owned()),
        Some(t) => t
            .render(req.template, Some(&locale), &Value::Object(ctx))
            .map_err(|e| e.to_string()),
    };
    match rendered {
        Ok(r) => {
            mail.subject = r.subject;
            mail.text = r.text;
            mail.html = r.html;
            mail.locale = r.locale;
        }
        Err(e) => {
            mail.subject = format!("[not rendered] {}", req.template);
            mail.text = format!("rendering template `{}` failed: {e}", req.template);
        }
    }
    mail
}

/// Why a rendered row must become a dead letter at once, if it must.
pub fn unsendable(mail: &NewMail) -> Option<String> {
    if mail.subject.starts_with("[not rendered]") {
        return Some(mail.text.clone());
    }
    if mail.to.is_empty() && mail.cc.is_empty() && mail.bcc.is_empty() {
        return Some("no recipient: the addresses were empty or the roles have no members".into());
    }
    None
}

/// The sender.
pub struct Mailer {
    store: Store,
    transport: clearflow_mail::Transport,
    cfg: MailConfig,
    clock: Clock,
    node_id: String,
    /// Poked when mail is queued.
    pub(crate) wake: Arc<Notify>,
    /// Metrics.
    pub(crate) counters: MailCounters,
    /// Opens reporters' identities for `to: reporter` (see [`REPORTER`]).
    identity_key: Option<crate::identity::IdentityKey>,
}

/// The recipient that stands for the whistleblower of the case. The outbox row keeps this
/// word, never the address: the address is decrypted only to hand the message to the
/// transport, and that use is recorded.
pub const REPORTER: &str = "reporter";

/// Whether a notification names the reporter, and if so whether the reporter is its only
/// recipient (the address must not be shown to anyone else in `To` or `Cc`).
pub fn reporter_recipient(to: &[String], cc: &[String], bcc: &[String]) -> Option<bool> {
    let named = to.iter().chain(cc).chain(bcc).any(|r| r.trim() == REPORTER);
    named.then_some(to.len() == 1 && cc.is_empty() && bcc.is_empty())
}

impl Mailer {
    /// A sender through the configured transport.
    pub fn new(
        store: Store,
        cfg: MailConfig,
        clock: Clock,
        node_id: String,
        wake: Arc<Notify>,
    ) -> Result<Mailer, clearflow_mail::ConfigError> {
        let transport = clearflow_mail::Transport::new(&cfg.transport)?;
        Ok(Mailer {
            store,
            transport,
            cfg,
            clock,
            node_id,
            wake,
            counters: MailCounters::default(),
            identity_key: None,
        })
    }

    /// The same sender, able to deliver `to: reporter` with `key`.
    pub fn with_identity_key(self, key: Option<crate::identity::IdentityKey>) -> Mailer {
        Mailer {
            identity_key: key,
            ..self
        }
    }

    /// The reporter's address for a message `to: reporter`, with the use recorded.
    /// Errors are dead-letter reasons and never contain identity data.
    async fn reporter_address(&self, m: &NewMail) -> Result<String, String> {
        let instance = m
            .instance_id
            .as_deref()
            .ok_or("a message to `reporter` must belong to an instance")?;
        let key = self
            .identity_key
            .as_ref()
            .ok_or("no identity key is configured, so the reporter's address cannot be read")?;
        let stored = self
            .store
            .identity_for(instance)
            .await
            .map_err(|e| format!("reading the reporter's identity: {e}"))?
            .ok_or("the report is anonymous: there is no address to write to")?;
        if !stored.has_email {
            return Err("the reporter gave no email address or asked not to be written to".into());
        }
        self.store
            .record_identity_use(
                &stored.instance_id,
                "system:mailer",
                "identity.used_for_mail",
                &json!({ "mail": m.id, "step": m.step, "from_instance": instance }),
                ms(self.clock.now()),
            )
            .await
            .map_err(|e| format!("recording the use of the reporter's identity: {e}"))?;
        let identity = key
            .open(&stored.instance_id, &stored.sealed)
            .map_err(|e| e.to_string())?;
        identity
            .email()
            .map(str::to_owned)
            .ok_or_else(|| "the reporter gave no email address".to_owned())
    }

    /// The delay before attempt `attempts + 1`, with up to 20% jitter fixed by the id.
    fn backoff(&self, id: &str, attempts: i64) -> chrono::TimeDelta {
        let base =
            self.cfg.retry_initial_seconds.max(1) as f64 * 2f64.powi(attempts.clamp(0, 30) as i32);
        let base = base.min(self.cfg.retry_max_seconds.max(1) as f64);
        let h = id
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let jitter = (h % 1000) as f64 / 1000.0 * 0.2;
        chrono::TimeDelta::milliseconds((base * (1.0 + jitter) * 1000.0) as i64)
    }

    /// Its counters.
    pub fn counters(&self) -> &MailCounters {
        &self.counters
    }

    /// Runs the mail service under supervision until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let (_, handle) = crate::service::supervise(self, shutdown);
        let _ = handle.await;
    }

    /// Claims due messages and sends them, `concurrency` at a time. Returns how many.
    pub async fn round(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let limit = (self.cfg.concurrency.max(1) * 8) as u32;
        let claimed = self
            .store
            .claim_mail(&self.node_id, ms(now), 120_000, limit)
            .await?;
        let n = claimed.len();
        let permits = Arc::new(Semaphore::new(self.cfg.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for c in claimed {
            let me = self.clone();
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore open");
            tasks.spawn(async move {
                let mut delivery = c.delivery;
                let outcome = me.deliver(&c.mail, c.attempts, &mut delivery).await;
                let result = me
                    .store
                    .finish_mail(&c.mail.id, &outcome, &delivery, ms(me.clock.now()))
                    .await;
                drop(permit);
                result
            });
        }
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "recording a send failed; the message will be sent again with the same Message-ID")
                }
                Err(e) => tracing::error!(error = %e, "a send task failed"),
            }
        }
        Ok(n)
    }

    /// Sends `m` to the recipients `delivery` does not hold yet, recording each result
    /// there.
    async fn deliver(&self, m: &NewMail, attempts: i64, delivery: &mut Delivery) -> MailOutcome {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(reason) = unsendable(m) {
            self.counters.dead.fetch_add(1, Relaxed);
            // The reason may quote template data; it is kept in the outbox row only.
            let class = if m.subject.starts_with("[not rendered]") {
                "not_rendered"
            } else {
                "no_recipient"
            };
            tracing::warn!(mail = %m.id, instance = ?m.instance_id, step = ?m.step, class, "mail is a dead letter");
            return MailOutcome::Dead(reason);
        }
        let mut to = m.to.clone();
        let mut secret: Option<String> = None;
        match reporter_recipient(&m.to, &m.cc, &m.bcc) {
            None => {}
            Some(false) => {
                self.counters.dead.fetch_add(1, Relaxed);
                return MailOutcome::Dead(
                    "`reporter` must be the only recipient of its message".into(),
                );
            }
            Some(true) => match self.reporter_address(m).await {
                Ok(address) => {
                    to = vec![address.clone()];
                    secret = Some(address);
                }
                Err(reason) => {
                    self.counters.dead.fetch_add(1, Relaxed);
                    tracing::warn!(mail = %m.id, instance = ?m.instance_id, step = ?m.step, "dead letter: {reason}");
                    return MailOutcome::Dead(reason);
                }
            },
        }
        // The server's reply may quote the recipient; the reporter's address must not
        // reach the outbox row or the log.
        let scrub = |reply: String| match &secret {
            Some(a) if reply.to_lowercase().contains(&a.to_lowercase()) => {
                let code: String = reply.chars().take_while(char::is_ascii_digit).collect();
                format!("{code} (the reply quoted the reporter's address and is withheld)")
                    .trim_start()
                    .to_owned()
            }
            _ => reply,
        };
        let mail = clearflow_mail::Mail {
            id: m.id.clone(),
            message_id: m.message_id.clone(),
            from: m.from.clone(),
            to,
            cc: m.cc.clone(),
            bcc: m.bcc.clone(),
            subject: m.subject.clone(),
            text: m.text.clone(),
            html: m.html.clone(),
            headers: vec![("Auto-Submitted".into(), "auto-generated".into())],
        };
        // A refused address is recorded on that recipient and the others still get the
        // message; who already has it is not sent it again (a refused recipient is tried
        // again on the next attempt, e.g. after an administrator's retry).
        let key = |address: &str| match &secret {
            Some(a) if a.eq_ignore_ascii_case(address) => REPORTER.to_owned(),
            _ => address.to_owned(),
        };
        let results = self
            .transport
            .send_each(&mail, |a| {
                delivery.get(&key(a)).is_none_or(|d| d.state != "sent")
            })
            .await;
        drop(mail);
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                self.counters.dead.fetch_add(1, Relaxed);
                tracing::error!(mail = %m.id, instance = ?m.instance_id, step = ?m.step, class = %e.kind, "mail cannot be built; a dead letter");
                return MailOutcome::Dead(scrub(e.reply));
            }
        };
        let at = ms(self.clock.now());
        let mut temporary: Vec<(String, String)> = Vec::new();
        for (address, result) in results {
            let (state, reply) = match result {
                Ok(d) => ("sent", scrub(d.reply)),
                Err(e) if e.is_temporary() => {
                    temporary.push((key(&address), scrub(e.reply)));
                    continue;
                }
                Err(e) => ("refused", scrub(e.reply)),
            };
            delivery.insert(
                key(&address),
                RecipientDelivery {
                    state: state.into(),
                    reply,
                    at,
                },
            );
        }
        if let Some((_, reply)) = temporary.first() {
            if attempts + 1 < i64::from(self.cfg.max_attempts) {
                self.counters.retried.fetch_add(1, Relaxed);
                let retry_at = self.clock.now() + self.backoff(&m.id, attempts);
                tracing::warn!(mail = %m.id, instance = ?m.instance_id, step = ?m.step, pending = temporary.len(), attempt = attempts + 1, retry_at = %retry_at, "mail delivery failed for some recipients; will retry them");
                return MailOutcome::Retry(ms(retry_at), reply.clone());
            }
            for (recipient, reply) in temporary {
                delivery.insert(
                    recipient,
                    RecipientDelivery {
                        state: "refused".into(),
                        reply: format!("gave up after {} attempts: {reply}", attempts + 1),
                        at,
                    },
                );
            }
        }
        let total = delivery.len();
        let refused: Vec<&RecipientDelivery> =
            delivery.values().filter(|d| d.state == "refused").collect();
        let accepted = delivery.values().rev().find(|d| d.state == "sent");
        match accepted {
            None => {
                self.counters.dead.fetch_add(1, Relaxed);
                tracing::error!(mail = %m.id, instance = ?m.instance_id, step = ?m.step, recipients = total, "every recipient refused the mail; a dead letter");
                MailOutcome::Dead(
                    refused
                        .first()
                        .map_or_else(String::new, |d| d.reply.clone()),
                )
            }
            Some(ok) if refused.is_empty() => {
                self.counters.sent.fetch_add(1, Relaxed);
                tracing::info!(mail = %m.id, instance = ?m.instance_id, step = ?m.step, "mail sent");
                MailOutcome::Sent(ok.reply.clone())
            }
            Some(ok) => {
                self.counters.sent.fetch_add(1, Relaxed);
                tracing::warn!(mail = %m.id, instance = ?m.instance_id, step = ?m.step, refused = refused.len(), recipients = total, "mail sent; some recipients refused it");
                MailOutcome::Partial(
                    ok.reply.clone(),
                    format!(
                        "refused for {} of {total} recipients: {}",
                        refused.len(),
                        refused[0].reply
                    ),
                )
            }
        }
    }
}

impl crate::service::Service for Mailer {
    fn name(&self) -> &'static str {
        "mailer"
    }
    fn poll(&self) -> Duration {
        Duration::from_millis(500)
    }
    fn wake(&self) -> &Notify {
        &self.wake
    }
    fn clock(&self) -> &Clock {
        &self.clock
    }
    async fn round(self: &Arc<Self>) -> Result<crate::service::Next, String> {
        use crate::service::Next;
        if Mailer::round(self).await.map_err(|e| e.to_string())? > 0 {
            return Ok(Next::Now);
        }
        let next = self
            .store
            .next_mail()
            .await
            .ok()
            .flatten()
            .and_then(DateTime::from_timestamp_millis);
        Ok(Next::Idle(next))
    }
}

#[cfg(test)]
mod reporter_tests {
    use super::reporter_recipient;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_reporter_is_written_to_alone() {
        assert_eq!(reporter_recipient(&v(&["a@x.org"]), &[], &[]), None);
        assert_eq!(reporter_recipient(&v(&["reporter"]), &[], &[]), Some(true));
        assert_eq!(
            reporter_recipient(&v(&["reporter", "a@x.org"]), &[], &[]),
            Some(false)
        );
        assert_eq!(
            reporter_recipient(&v(&["reporter"]), &v(&["a@x.org"]), &[]),
            Some(false)
        );
        assert_eq!(
            reporter_recipient(&v(&["a@x.org"]), &[], &v(&["reporter"])),
            Some(false)
        );
    }
}
