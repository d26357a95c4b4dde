//! [`Transport`]: built once from the configuration, cloned cheaply, sends one [`Mail`] at a time.

use std::sync::Arc;

use crate::config::{ConfigError, TransportConfig};
use crate::error::{Delivered, SendError};
use crate::maildir::Maildir;
use crate::message::{Built, Mail, build};
use crate::rate::RateLimiter;
use crate::smtp::Smtp;

/// A configured mail transport. Clones share the connection pool and the rate limit.
#[derive(Debug, Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: Kind,
    limiter: Option<RateLimiter>,
}

#[derive(Debug)]
enum Kind {
    Smtp(Smtp),
    Maildir(Maildir),
}

impl Transport {
    /// Checks the configuration and prepares the transport; no connection is opened yet.
    ///
    /// Reads the password and CA files, refuses plain SMTP to a host that is not loopback,
    /// and creates the maildir's directories. Sending needs a Tokio runtime; creating does not.
    pub fn new(cfg: &TransportConfig) -> Result<Self, ConfigError> {
        let (kind, limiter) = match cfg {
            TransportConfig::Smtp(smtp) => (
                Kind::Smtp(Smtp::new(smtp)?),
                smtp.rate_per_sec.map(RateLimiter::new),
            ),
            TransportConfig::Maildir { path } => (Kind::Maildir(Maildir::open(path)?), None),
        };
        Ok(Transport {
            inner: Arc::new(Inner { kind, limiter }),
        })
    }

    /// Builds the message once and delivers it to each envelope recipient (every address
    /// of `to`, `cc` and `bcc` once) for which `pending` is true. When all are pending it
    /// goes in one transaction; if the server refuses that for good (a refused recipient
    /// fails the whole transaction before any is sent), or when only some are pending, it
    /// goes to each pending recipient in a transaction of its own, so a refused address
    /// costs only that recipient the message. Returns each pending recipient's address
    /// (as in the envelope) with its result, in envelope order; an `Err` when the message
    /// cannot be built at all.
    pub async fn send_each(
        &self,
        mail: &Mail,
        pending: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, Result<Delivered, SendError>)>, SendError> {
        let built = build(mail)?;
        let each: Vec<(String, Built)> = built
            .each_recipient()
            .into_iter()
            .filter(|(a, _)| pending(a))
            .collect();
        if each.len() == built.envelope.to().len() {
            match self.deliver(mail, &built).await {
                Err(e) if !e.is_temporary() && each.len() > 1 => {}
                whole => {
                    return Ok(each.into_iter().map(|(a, _)| (a, whole.clone())).collect());
                }
            }
        }
        let mut out = Vec::with_capacity(each.len());
        for (address, one) in each {
            let result = self.deliver(mail, &one).await;
            out.push((address, result));
        }
        Ok(out)
    }

    async fn deliver(&self, mail: &Mail, built: &Built) -> Result<Delivered, SendError> {
        if let Some(limiter) = &self.inner.limiter {
            limiter.acquire().await;
        }
        let result = match &self.inner.kind {
            Kind::Smtp(smtp) => smtp.send(built).await,
            Kind::Maildir(maildir) => maildir.deliver(built).await,
        };
        // Neither addresses nor the server's reply text are logged: the reply may quote a
        // recipient. The caller keeps the reply in its own record.
        match &result {
            Ok(_) => tracing::debug!(mail = %mail.id, "mail delivered"),
            Err(e) => {
                tracing::debug!(mail = %mail.id, class = %e.kind, code = ?e.code(), "mail not delivered")
            }
        }
        result
    }

    /// Builds and delivers one message to every recipient in `to`, `cc` and `bcc`.
    ///
    /// The message either goes to all envelope recipients or the send fails: a recipient
    /// the server refuses fails the whole message with that recipient's reply.
    pub async fn send(&self, mail: &Mail) -> Result<Delivered, SendError> {
        let built = build(mail)?;
        self.deliver(mail, &built).await
    }
}
