//! The clearflow runtime: everything the daemon does, behind one façade, [`Runtime`].
//!
//! # Layout
//!
//! - [`Runtime`] (`facade`): the calls the API, the web console and the CLI make. Each
//!   write wakes the service that acts on it.
//! - `service`: one shape for a background loop and the supervisor that restarts one
//!   after a panic; health for `/readyz`, restarts for `/metrics`.
//! - [`config`]: configuration from a TOML file and `CLEARFLOW__…` variables.
//! - [`registry`]: deployed workflows, calendars and every version in use.
//! - [`worker`]: the engine service: claim, advance through the pure engine, commit.
//! - [`scheduler`]: the cron service: starts instances at their schedules' fire times, once each.
//! - [`retention`]: closed cases warned of their expiry, then deleted, each step audited.
//! - [`mailer`]: rendering notifications into the outbox and delivering it.
//! - [`clock`]: the system clock or a manual one for tests.
//! - [`directory`]: users, their roles and addresses.
//! - [`plugins`]: the declared WASM plugins, as the engine calls them.
//! - [`identity`]: reporters' identities sealed at rest, and receipt codes.
//! - [`intake`]: filing a complaint and the reporter's status check, for every front door.
//! - [`data`]: the store's rows and filters as the façade hands them out.
//!
//! **Architecture invariants:** decisions about instances are made by
//! `clearflow_core::engine`, never here; SQL is written only in `clearflow-store`;
//! nothing here blocks a thread on the store (the pure advance runs between two async
//! phases that read and write).

pub mod clock;
pub mod config;
pub mod console;
mod digest;
pub mod directory;
mod facade;
pub mod identity;
pub mod intake;
pub mod mailer;
mod metrics;
pub mod plugins;
mod provisional;
pub mod registry;
pub mod retention;
pub mod scheduler;
mod service;
mod settle;
pub mod worker;

pub use facade::{Hooks, NotReady, OpenError, Runtime, load_key, make_clock, redact, sources};
pub use service::ServiceHealth;
pub use settle::is_settled;

/// The store's rows, filters and errors as the façade hands them out, so that clients
/// of the runtime never depend on the store crate (or sqlx) themselves.
pub mod data {
    pub use clearflow_store::identity::StoredIdentity;
    pub use clearflow_store::schedules::FireRecord;
    pub use clearflow_store::{
        AuditEvent, AuditRecord, Closing, EventRecord, HistoryRecord, InstanceRow, ListFilter,
        MailRecord, NewInstance, Started, StoreError, TOKEN_PREFIX, TaskFilter, TaskRefused,
        TaskRow, TaskView, TokenRecord, parse_token, secret_matches,
    };
}
