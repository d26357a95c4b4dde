//! The clearflow plugin SDK: write a workflow step as a plain Rust function over serde types.
//!
//! The SDK hides the WebAssembly component plumbing (`wit-bindgen`, the
//! `clearflow:plugin/step` world in `plugins/wit/plugin.wit`). A plugin author
//! writes one function and registers it with [`export_step!`]:
//!
//! ```
//! use clearflow_plugin_sdk::{Context, StepError, export_step};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Input { amount: u64 }
//!
//! #[derive(Serialize)]
//! struct Output { large: bool }
//!
//! #[derive(Deserialize, Default)]
//! #[serde(default)]
//! struct Config { threshold: u64 }
//!
//! fn run(ctx: &Context, input: Input) -> Result<Output, StepError> {
//!     let config: Config = ctx.config()?;
//!     ctx.info(&format!("checking amount for step {}", ctx.step()));
//!     Ok(Output { large: input.amount > config.threshold })
//! }
//!
//! export_step!(run);
//!
//! // The same function runs natively in unit tests:
//! let out = clearflow_plugin_sdk::testing::call(run, r#"{"threshold": 10}"#, r#"{"amount": 12}"#);
//! assert_eq!(out.unwrap(), serde_json::json!({"large": true}));
//! ```
//!
//! Input that does not deserialise into the function's input type becomes
//! [`StepError::InvalidInput`] carrying serde's message, before the function
//! runs. Output is serialised to JSON by the SDK.
//!
//! On `wasm32` the macro exports the component's `run` function; on any other
//! target it only type-checks the function, so the plugin's logic builds and
//! tests with a native `cargo test`.

use serde::Serialize;
use serde::de::DeserializeOwned;

// The generated bindings name the runtime by the crate's public path, which
// must also resolve inside this crate.
#[cfg(target_arch = "wasm32")]
extern crate self as clearflow_plugin_sdk;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    //! Generated bindings of the `clearflow:plugin/step` world.
    #![allow(missing_docs, clippy::too_many_arguments)]
    wit_bindgen::generate!({
        world: "step",
        path: "../wit",
        runtime_path: "clearflow_plugin_sdk::__private::rt",
        default_bindings_module: "clearflow_plugin_sdk::bindings",
        pub_export_macro: true,
        export_macro_name: "__export_step_world",
    });
}

/// Why a step failed; the host decides retries from the variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// The input does not fit the plugin's contract; a retry with the same input cannot help.
    InvalidInput(String),
    /// A temporary failure (a busy dependency, a lock); the host retries with backoff.
    Transient(String),
    /// A failure that will repeat on retry, including invalid plugin configuration.
    Permanent(String),
}

impl StepError {
    /// An [`StepError::InvalidInput`] with the given message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        StepError::InvalidInput(message.into())
    }

    /// A [`StepError::Transient`] with the given message.
    pub fn transient(message: impl Into<String>) -> Self {
        StepError::Transient(message.into())
    }

    /// A [`StepError::Permanent`] with the given message.
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError::Permanent(message.into())
    }

    /// The message carried by any variant.
    pub fn message(&self) -> &str {
        match self {
            StepError::InvalidInput(m) | StepError::Transient(m) | StepError::Permanent(m) => m,
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let class = match self {
            StepError::InvalidInput(_) => "invalid input",
            StepError::Transient(_) => "transient",
            StepError::Permanent(_) => "permanent",
        };
        write!(f, "{class}: {}", self.message())
    }
}

impl std::error::Error for StepError {}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics useful when debugging a plugin.
    Debug,
    /// Normal progress information.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// A failure reported before returning an error.
    Error,
}

/// What a step function knows about its call: the invocation fields and the plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    workflow: String,
    instance: String,
    step: String,
    attempt: u32,
    config: String,
}

impl Context {
    /// A context from the invocation fields; `config` is the plugin configuration as JSON.
    ///
    /// The host builds contexts; tests build their own.
    pub fn new(
        workflow: impl Into<String>,
        instance: impl Into<String>,
        step: impl Into<String>,
        attempt: u32,
        config: impl Into<String>,
    ) -> Self {
        Context {
            workflow: workflow.into(),
            instance: instance.into(),
            step: step.into(),
            attempt,
            config: config.into(),
        }
    }

    /// Name of the workflow definition.
    pub fn workflow(&self) -> &str {
        &self.workflow
    }

    /// Identifier of the workflow instance.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Name of the step inside the workflow.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// Attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The plugin configuration as raw JSON text.
    pub fn config_json(&self) -> &str {
        &self.config
    }

    /// The plugin configuration deserialised into `T`.
    ///
    /// An empty configuration reads as JSON `null`, so `Option<T>` and
    /// `#[serde(default)]` structs accept a plugin declared without config.
    /// A configuration that does not fit is [`StepError::Permanent`]: retrying
    /// cannot fix a deployment mistake.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        let text = if self.config.trim().is_empty() {
            "null"
        } else {
            &self.config
        };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| StepError::permanent(format!("plugin config is not json: {e}")))?;
        let parsed = match serde_json::from_value::<T>(value.clone()) {
            // A plugin declared without config should still get a defaulted struct.
            Err(_) if value.is_null() => serde_json::from_value::<T>(serde_json::json!({})),
            other => other,
        };
        parsed.map_err(|e| StepError::permanent(format!("invalid plugin config: {e}")))
    }

    /// Emits a log line to the host.
    pub fn log(&self, level: Level, message: &str) {
        imp::log(level, message);
    }

    /// Emits a trace log line.
    pub fn trace(&self, message: &str) {
        self.log(Level::Trace, message);
    }

    /// Emits a debug log line.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }

    /// Emits an info log line.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Emits a warning log line.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// Emits an error log line.
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }
}

/// Decodes the JSON input, runs the step function and encodes its output.
///
/// This is what the exported component function does; it is public so that
/// [`testing::call`] and plugins in other shapes can reuse it.
pub fn run_json<I, O, F>(ctx: &Context, input: &str, f: F) -> Result<String, StepError>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(&Context, I) -> Result<O, StepError>,
{
    let input: I =
        serde_json::from_str(input).map_err(|e| StepError::invalid_input(e.to_string()))?;
    let output = f(ctx, input)?;
    serde_json::to_string(&output)
        .map_err(|e| StepError::permanent(format!("output is not serialisable: {e}")))
}

/// Helpers to run step functions natively in unit tests.
pub mod testing {
    use super::{Context, StepError, run_json};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Runs `f` as the host would, with `config` and `input` as JSON text, and parses the output.
    pub fn call<I, O, F>(f: F, config: &str, input: &str) -> Result<serde_json::Value, StepError>
    where
        I: DeserializeOwned,
        O: Serialize,
        F: FnOnce(&Context, I) -> Result<O, StepError>,
    {
        call_with(
            &Context::new("test-workflow", "test-instance", "test-step", 1, config),
            f,
            input,
        )
    }

    /// Like [`call`] with a caller-built [`Context`], for attempt-dependent logic.
    pub fn call_with<I, O, F>(
        ctx: &Context,
        f: F,
        input: &str,
    ) -> Result<serde_json::Value, StepError>
    where
        I: DeserializeOwned,
        O: Serialize,
        F: FnOnce(&Context, I) -> Result<O, StepError>,
    {
        let text = run_json(ctx, input, f)?;
        Ok(serde_json::from_str(&text).expect("run_json returns valid json"))
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::bindings::clearflow::plugin::log as wit;

    pub(crate) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::log(level, message);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Level;

    // Natively there is no host; unit tests see plugin logs on stderr.
    pub(crate) fn log(level: Level, message: &str) {
        eprintln!("[{level:?}] {message}");
    }
}

#[doc(hidden)]
pub mod __private {
    //! Support for the code [`export_step!`](crate::export_step) expands to.
    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen::rt;

    #[cfg(target_arch = "wasm32")]
    pub use crate::bindings::{__export_step_world, Guest};

    use super::{Context, StepError};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Type-checks a step function on targets where nothing is exported.
    pub fn assert_step<I, O>(_f: fn(&Context, I) -> Result<O, StepError>)
    where
        I: DeserializeOwned,
        O: Serialize,
    {
    }

    #[cfg(target_arch = "wasm32")]
    pub use wasm::dispatch;

    #[cfg(target_arch = "wasm32")]
    mod wasm {
        use super::{Context, DeserializeOwned, Serialize, StepError};
        use crate::bindings::clearflow::plugin::types as wit;
        use crate::run_json;

        /// Adapts a typed step function to the exported WIT `run` function.
        pub fn dispatch<I, O>(
            call: wit::Invocation,
            input: String,
            f: fn(&Context, I) -> Result<O, StepError>,
        ) -> Result<String, wit::StepError>
        where
            I: DeserializeOwned,
            O: Serialize,
        {
            let ctx = Context::new(
                call.workflow,
                call.instance,
                call.step,
                call.attempt,
                call.config,
            );
            run_json(&ctx, &input, f).map_err(|e| match e {
                StepError::InvalidInput(m) => wit::StepError::InvalidInput(m),
                StepError::Transient(m) => wit::StepError::Transient(m),
                StepError::Permanent(m) => wit::StepError::Permanent(m),
            })
        }
    }
}

/// Registers a step function as the plugin's exported `run`.
///
/// The function must have the shape
/// `fn(&Context, I) -> Result<O, StepError>` with `I: DeserializeOwned` and
/// `O: Serialize`. Use it once per plugin crate, at the crate root.
///
/// ```
/// use clearflow_plugin_sdk::{Context, StepError, export_step};
///
/// fn run(_ctx: &Context, input: serde_json::Value) -> Result<serde_json::Value, StepError> {
///     Ok(input)
/// }
/// export_step!(run);
/// ```
#[macro_export]
macro_rules! export_step {
    ($f:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __ClearflowStep;
            impl $crate::__private::Guest for __ClearflowStep {
                fn run(
                    call: $crate::bindings::clearflow::plugin::types::Invocation,
                    input: ::std::string::String,
                ) -> ::std::result::Result<
                    ::std::string::String,
                    $crate::bindings::clearflow::plugin::types::StepError,
                > {
                    $crate::__private::dispatch(call, input, $f)
                }
            }
    $crate::__private::__export_step_world!(__ClearflowStep with_types_in $crate::bindings);
        };
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || $crate::__private::assert_step($f);
    };
}
