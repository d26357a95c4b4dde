//! Mail transports for clearflow: building messages and delivering them over SMTP or to a maildir.
//!
//! The daemon's outbox worker hands each queued row to [`Transport::send`] as a [`Mail`]
//! and records the outcome: [`Delivered`] marks the row sent; a [`SendError`] says whether
//! to retry later ([`FailureKind::Temporary`]) or dead-letter it ([`FailureKind::Permanent`]),
//! and carries the server's reply for the operator.
//!
//! # Layout
//! - `config`: the serde configuration ([`TransportConfig`], [`SmtpConfig`]) and [`ConfigError`].
//! - `message`: [`Mail`], the stable [`message_id`], and building the RFC 5322 message
//!   with lettre (multipart/alternative, encoded UTF-8 headers, no `Bcc` header).
//! - `smtp`: SMTP over lettre's connection API with our own pool (TCP_NODELAY, bounded by
//!   `pool_max`, whole-send timeout) and the classification of its errors.
//! - `maildir`: the embedded default: atomic delivery into a local maildir's `new/`.
//! - `rate`: a token bucket that spaces out sends when `rate_per_sec` is set.
//! - `transport`: [`Transport`], the one type the rest of clearflow uses.
//!
//! **Architecture invariant:** this crate knows nothing about the outbox table, retries or
//! templates. It delivers one message once and reports what happened; the caller decides
//! what to do next.

mod config;
mod error;
mod maildir;
mod message;
mod rate;
mod smtp;
mod transport;

pub use config::{ConfigError, Security, SmtpConfig, TransportConfig};
pub use error::{Delivered, FailureKind, SendError};
pub use message::{Mail, message_id};
pub use transport::Transport;
