//! The pure core of clearflow: workflow definitions, validation, compilation and the instance state machine.
//!
//! # Layout
//!
//! - [`yaml`]: YAML read into a tree that remembers positions; hostile documents refused.
//! - [`definition`]: the typed file format (the raw model) and its parsing, every
//!   shape problem reported at once with file:line:column.
//! - [`expr`]: expressions and value templates (MiniJinja's expression language),
//!   compiled at load time.
//! - [`compile`]: semantic checks (references, jumps, reachability, joins, durations,
//!   schedules) and compilation to a [`Workflow`].
//! - [`catalog`]: checks across files: unknown workflows, cycles of concurrent starts.
//! - [`engine`]: the instance state machine `apply(workflow, instance, event, env)`.
//! - [`graph`]: Mermaid flowcharts of workflows.
//! - [`limits`]: the table of limits at the door and the JSON depth and size checks.
//! - [`schema`]: the JSON Schema of workflow files.
//!
//! **Architecture invariant:** this crate performs no IO and knows nothing of tokio,
//! sqlx, wasmtime or lettre. Time is a parameter. Everything it returns is data:
//! diagnostics, transitions, effects.

pub mod catalog;
pub mod compile;
pub mod definition;
pub mod diag;
pub mod engine;
pub mod expr;
pub mod graph;
pub mod limits;
pub mod schema;
pub mod workflow;
pub mod yaml;

pub use catalog::Catalog;
pub use compile::load;
pub use diag::{Diagnostic, Pos, Severity};
pub use engine::{
    Effect, Env, Event, HISTORY_KINDS, HistoryEntry, Instance, Status, Transition, apply, create,
};
pub use limits::{Limit, LimitError, Limits, check_json_bytes, check_json_value};
pub use workflow::Workflow;
