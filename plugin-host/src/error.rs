//! Errors as data: what went wrong creating the host, loading a plugin or calling one.

use std::path::PathBuf;
use std::time::Duration;

use crate::LogLine;

/// The host could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The compiled-code cache directory could not be created.
    #[error("cannot create cache directory {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// wasmtime refused the engine configuration.
    #[error("cannot create wasmtime engine: {0}")]
    Engine(String),
}

/// One plugin that could not be loaded; [`Host::load`](crate::Host::load) returns all of them at once.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin} ({path}): {kind}")]
pub struct LoadError {
    /// Name of the plugin as declared.
    pub plugin: String,
    /// Path of the component as declared.
    pub path: PathBuf,
    /// What went wrong.
    pub kind: LoadErrorKind,
}

/// What went wrong loading a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    /// Another declaration uses the same name.
    #[error("declared more than once")]
    Duplicate,
    /// The declared limits cannot be enforced.
    #[error("invalid limits: {0}")]
    InvalidLimits(String),
    /// The plugin config is not serialisable.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// The component file could not be read.
    #[error("cannot read component: {0}")]
    Read(std::io::Error),
    /// The declared sha256 is not the file's.
    #[error("sha256 mismatch: expected {expected}, actual {actual}")]
    Sha256Mismatch {
        /// The sha256 declared in config.
        expected: String,
        /// The sha256 of the file.
        actual: String,
    },
    /// wasmtime could not compile the component.
    #[error("cannot compile component: {0}")]
    Compile(String),
    /// The compiled code could not be written to or read from the cache.
    #[error("compiled-code cache: {0}")]
    Cache(String),
    /// The component imports interfaces the host does not grant (see [`crate::policy`]).
    #[error("imports {}, which plugins are not granted", imports.join(", "))]
    ForbiddenImports {
        /// Every refused import, e.g. `wasi:sockets/tcp@0.2.6`.
        imports: Vec<String>,
    },
    /// The component does not implement the `clearflow:plugin/step` world.
    #[error("does not implement the clearflow:plugin/step world: {0}")]
    NotAStep(String),
}

/// How a call failed; decides retries and what operators see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The plugin rejected its input.
    InvalidInput,
    /// The plugin reported a temporary failure.
    Transient,
    /// The plugin reported a failure that will repeat.
    Permanent,
    /// The call ran past its deadline.
    Timeout,
    /// The plugin tried to use more memory than its limit.
    MemoryLimit,
    /// The plugin used up its fuel.
    FuelExhausted,
    /// The plugin exhausted the wasm call stack.
    StackOverflow,
    /// The plugin trapped: a panic, `unreachable`, an out-of-bounds access, or a denied capability.
    Trap,
    /// The serialised input exceeds the plugin's input limit.
    InputTooLarge,
    /// The output exceeds the plugin's output limit.
    OutputTooLarge,
    /// The output is not JSON.
    InvalidOutput,
    /// No plugin of that name is loaded.
    UnknownPlugin,
}

impl ErrorClass {
    /// Every class, in declaration order.
    pub const ALL: [ErrorClass; 12] = [
        ErrorClass::InvalidInput,
        ErrorClass::Transient,
        ErrorClass::Permanent,
        ErrorClass::Timeout,
        ErrorClass::MemoryLimit,
        ErrorClass::FuelExhausted,
        ErrorClass::StackOverflow,
        ErrorClass::Trap,
        ErrorClass::InputTooLarge,
        ErrorClass::OutputTooLarge,
        ErrorClass::InvalidOutput,
        ErrorClass::UnknownPlugin,
    ];

    /// Whether a step failing this way is retried by default: only transient failures and timeouts.
    pub fn retryable(&self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::Timeout)
    }

    /// A stable snake_case name, for history records, metrics and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::InvalidInput => "invalid_input",
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Timeout => "timeout",
            ErrorClass::MemoryLimit => "memory_limit",
            ErrorClass::FuelExhausted => "fuel_exhausted",
            ErrorClass::StackOverflow => "stack_overflow",
            ErrorClass::Trap => "trap",
            ErrorClass::InputTooLarge => "input_too_large",
            ErrorClass::OutputTooLarge => "output_too_large",
            ErrorClass::InvalidOutput => "invalid_output",
            ErrorClass::UnknownPlugin => "unknown_plugin",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call, with what was observed before it failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{class}: {message}")]
pub struct CallError {
    /// How it failed.
    pub class: ErrorClass,
    /// What happened, for people.
    pub message: String,
    /// Wall time spent in the call.
    pub wall: Duration,
    /// Log lines captured before the failure.
    pub logs: Vec<LogLine>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_and_timeout_retry() {
        let retryable: Vec<_> = ErrorClass::ALL.iter().filter(|c| c.retryable()).collect();
        assert_eq!(retryable, [&ErrorClass::Transient, &ErrorClass::Timeout]);
    }

    #[test]
    fn names_are_unique_snake_case() {
        let names: std::collections::HashSet<_> =
            ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorClass::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
