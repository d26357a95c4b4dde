//! Email templates for clearflow: loading a folder, checking templates against what a notify step provides, and rendering.
//!
//! # Layout
//!
//! - [`layout`]: the file-name rule `NAME.LOCALE.PART` (`task-assigned.zh-CN.txt`) and
//!   the known [`LOCALES`].
//! - [`load`]: [`load_dir`] reads a folder such as `workflows/templates/`, compiles
//!   every file and returns [`Templates`] or every [`TemplateError`] at once.
//! - [`templates`]: [`Templates`], the loaded set: [`Templates::names`],
//!   [`Templates::locales`], the load-time [`Templates::check`] used by workflow
//!   validation, and [`Templates::variables`].
//! - [`render`]: [`Templates::render`] with locale fallback, giving a [`Rendered`]
//!   subject, text and optional HTML part, or a [`RenderError`].
//! - `scan`: a small lexical scan of template sources for the literal names of
//!   included templates and for the line where a variable is read, which MiniJinja's
//!   static analysis does not report.
//!
//! **Architecture invariant:** only [`load_dir`] does IO (it reads the folder).
//! Checking and rendering are pure functions of the loaded sources and the data
//! passed in; nothing here reads the clock, the store or the network, and nothing
//! here knows about workflows beyond the names in [`ALWAYS_PROVIDED`].
//!
//! **Architecture invariant:** rendering is strict. A variable a template reads
//! that the data does not hold is an error, never an empty string; the load-time
//! [`Templates::check`] exists so that such errors surface when a workflow is
//! validated, not when the mail is due.

#![warn(missing_docs)]

pub mod layout;
pub mod load;
pub mod render;
mod scan;
pub mod templates;

pub use layout::{DEFAULT_LOCALE, LOCALES, Part};
pub use load::{ErrorKind, TemplateError, load_dir};
pub use render::{RenderError, Rendered};
pub use templates::Templates;

/// The top-level names every notify step provides to its template, besides the keys
/// of its `data:` mapping.
///
/// - `instance`: `id`, `workflow`, `started_at` of the workflow instance;
/// - `step`: the notify step's id;
/// - `recipient`: `address`, `name` (may be null) and `locale` of the person mailed;
/// - `case_url`: the link to the case or task in the web interface;
/// - `now`: the time of rendering, already formatted for the reader.
pub const ALWAYS_PROVIDED: &[&str] = &[
    "instance",
    "step",
    "recipient",
    "case_url",
    "status_url",
    "now",
];
