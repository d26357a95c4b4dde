//! The clearflow daemon and command-line interface: the shell around the pure core.
//!
//! # Layout
//!
//! - [`cli`]: the `clearflow` command (clap), local commands and an HTTP client.
//! - [`config`]: configuration from a TOML file and `CLEARFLOW__…` variables.
//! - [`server`]: `clearflow serve`, signals (SIGTERM drains, SIGHUP reloads).
//! - [`registry`]: deployed workflows, calendars and every version in use.
//! - [`worker`]: the engine loop: claim, advance through the pure engine, commit.
//! - [`scheduler`]: the cron loop: starts instances at their schedules' fire times, once each.
//! - [`retention`]: closed cases warned of their expiry, then deleted, each step audited.
//! - [`store`]: the sqlx store for SQLite and PostgreSQL.
//! - [`api`]: the axum HTTP API.
//! - [`clock`]: the system clock or a manual one for tests.
//! - [`mailer`]: rendering notifications into the outbox and delivering it.
//! - [`directory`]: users, their roles and addresses.
//! - [`plugins`]: the declared WASM plugins, as the engine calls them.
//! - [`identity`]: reporters' identities sealed at rest, and receipt codes.
//!
//! **Architecture invariant:** all IO of clearflow happens in this crate; decisions
//! about instances are made by `clearflow_core::engine`, never here.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod digest;
pub mod directory;
pub mod identity;
pub mod mailer;
pub mod plugins;
pub mod provisional;
pub mod registry;
pub mod retention;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod worker;
