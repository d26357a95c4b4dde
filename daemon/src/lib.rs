//! The clearflow daemon and command-line interface: the binary that wires the crates.
//!
//! # Layout
//!
//! - [`cli`]: the `clearflow` command (clap), local commands and an HTTP client.
//! - [`server`]: `clearflow serve`: opens the runtime, serves the API, handles signals
//!   (SIGTERM drains, SIGHUP reloads).
//!
//! Everything else lives in the crates below it: `clearflow-runtime` (the façade and its
//! services), `clearflow-api` (HTTP), `clearflow-store` (SQL), and the pure crates.
//! **Architecture invariant:** decisions about instances are made by
//! `clearflow_core::engine`; this crate only wires and parses arguments.

pub mod cli;
pub mod server;
