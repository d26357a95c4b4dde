//! The sandboxed WASM plugin host of clearflow, on wasmtime and the Component Model.
//!
//! A plugin is a WebAssembly component implementing the
//! `clearflow:plugin/step` world (`plugins/wit/plugin.wit`): it exports
//! `run(invocation, input-json) -> result<output-json, step-error>` and may
//! import `clearflow:plugin/log`. The daemon declares plugins in config
//! ([`PluginDecl`]: path, sha256, [`Limits`], plugin config), loads them all
//! at once with [`Host::load`] and calls them with [`Plugins::call`].
//!
//! # Layout
//! - `host`: the [`Host`] (one wasmtime engine, pooling allocator, epoch
//!   ticker) and loading: sha256 check, compiled-code cache, import policy.
//! - `cache`: the compiled-code cache on disk; the only module with `unsafe`.
//! - `policy`: which imports a plugin may have, and why.
//! - `call`: one call: a fresh store and instance, limits, log capture,
//!   error classification.
//! - `capture`: bounded stdout/stderr capture.
//! - `scaffold`: the files `clearflow plugin new NAME` writes.
//! - `error`: errors as data, and the [`ErrorClass`] that decides retries.
//!
//! # Sandbox
//! Each call gets a fresh store and instance from a pre-linked
//! `InstancePre`, so no state survives between calls, and a trapped
//! instance is simply dropped. Limits: an epoch deadline (`timeout`), a
//! memory cap enforced by a resource limiter (exceeding it fails the call as
//! [`ErrorClass::MemoryLimit`]), optional fuel, and byte caps on input,
//! output and logs.
//!
//! **Capability decision.** Rust's `wasm32-wasip2` standard library makes
//! even a trivial plugin import a baseline of WASI 0.2 interfaces:
//! `wasi:io/{poll,error,streams}` and the `wasi:cli` stdio, environment,
//! exit and terminal interfaces. The host grants that baseline, the
//! clearflow interfaces and `wasi:random/*` (for `HashMap` seeds) — see
//! [`policy::GRANTED`] — and links nothing else. It grants them with empty
//! capabilities: no arguments, no environment variables, stdin closed,
//! stdout and stderr captured into the call's logs. No filesystem, clocks,
//! sockets or HTTP: a component importing any other interface (`std::fs`
//! pulls in `wasi:filesystem/*`, `std::net` pulls in `wasi:sockets/*`) is
//! refused at load with [`LoadErrorKind::ForbiddenImports`] naming every
//! such import.
//!
//! **Architecture invariant:** the host never gives a plugin a file
//! descriptor, socket, environment variable or argument. Plugins are pure
//! functions of their invocation, config and input.

mod cache;
mod call;
mod capture;
mod error;
mod host;
pub mod policy;
mod scaffold;

use std::path::PathBuf;
use std::time::Duration;

pub use error::{CallError, ErrorClass, HostError, LoadError, LoadErrorKind};
pub use host::{Host, Plugins};
pub use scaffold::scaffold;

/// Per-plugin resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call; default 5 s.
    pub timeout: Duration,
    /// Linear memory a call may use, in bytes; default 64 MiB, at most [`Limits::MAX_MEMORY_BYTES`].
    pub memory_bytes: usize,
    /// Fuel (roughly, wasm instructions) per call; `None` (default) meters nothing.
    pub fuel: Option<u64>,
    /// Largest serialised input, in bytes; default 1 MiB.
    pub max_input_bytes: usize,
    /// Largest output, in bytes; default 1 MiB.
    pub max_output_bytes: usize,
    /// Log bytes kept per call, log import, stdout and stderr together; default 64 KiB.
    pub max_log_bytes: usize,
}

impl Limits {
    /// The largest `memory_bytes` the host accepts; it sizes the pooling allocator's slots.
    pub const MAX_MEMORY_BYTES: usize = 1 << 30;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            fuel: None,
            max_input_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            max_log_bytes: 64 << 10,
        }
    }
}

/// A plugin as declared in the daemon's config.
#[derive(Debug, Clone)]
pub struct PluginDecl {
    /// Name used by workflow steps (`plugin: NAME`).
    pub name: String,
    /// Path of the `.wasm` component.
    pub path: PathBuf,
    /// Expected sha256 of the file, lowercase hex.
    pub sha256: String,
    /// Resource limits.
    pub limits: Limits,
    /// Plugin-specific config, passed to every call.
    pub config: serde_json::Value,
}

/// Who is calling: the workflow step a call belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Workflow definition name.
    pub workflow: String,
    /// Workflow instance id.
    pub instance: String,
    /// Step name.
    pub step: String,
    /// Attempt number, from 1.
    pub attempt: u32,
}

/// A successful call.
#[derive(Debug, Clone)]
pub struct CallOutput {
    /// The plugin's output.
    pub output: serde_json::Value,
    /// Wall time of the call, instantiation included.
    pub wall: Duration,
    /// Peak linear memory of the instance, in bytes.
    pub memory_peak: usize,
    /// Fuel consumed, when the plugin is metered.
    pub fuel_used: Option<u64>,
    /// Captured log lines.
    pub logs: Vec<LogLine>,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The `clearflow:plugin/log` import.
    Log,
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// The host, e.g. a truncation notice.
    Host,
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very detailed diagnostics.
    Trace,
    /// Debugging diagnostics.
    Debug,
    /// Normal information; stdout lines.
    Info,
    /// Handled problems; stderr lines.
    Warn,
    /// Failures.
    Error,
}

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Where it came from.
    pub source: LogSource,
    /// Severity.
    pub level: LogLevel,
    /// The text, without trailing newline.
    pub message: String,
}
