//! `flaky`: a test plugin that fails transiently before a configured attempt, then succeeds.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// When to start succeeding.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The first attempt that succeeds; attempts before it fail as transient.
    pub succeed_on_attempt: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            succeed_on_attempt: 3,
        }
    }
}

/// Output of a successful attempt.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The attempt that succeeded.
    pub attempt: u32,
    /// The input, unchanged.
    pub input: Value,
}

/// Fails with `transient` while `attempt < succeed_on_attempt`.
pub fn run(ctx: &Context, input: Value) -> Result<Output, StepError> {
    let config: Config = ctx.config()?;
    if ctx.attempt() < config.succeed_on_attempt {
        ctx.warn(&format!("attempt {} fails on purpose", ctx.attempt()));
        return Err(StepError::transient(format!(
            "attempt {} of {} needed",
            ctx.attempt(),
            config.succeed_on_attempt
        )));
    }
    Ok(Output {
        attempt: ctx.attempt(),
        input,
    })
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;
    use clearflow_plugin_sdk::testing::call_with;

    fn attempt(n: u32, config: &str) -> Result<Value, StepError> {
        call_with(&Context::new("w", "i", "s", n, config), run, "null")
    }

    #[test]
    fn fails_before_configured_attempt() {
        assert_eq!(
            attempt(1, r#"{"succeed_on_attempt": 2}"#),
            Err(StepError::transient("attempt 1 of 2 needed"))
        );
        assert_eq!(
            attempt(2, r#"{"succeed_on_attempt": 2}"#).unwrap()["attempt"],
            2
        );
    }

    #[test]
    fn default_is_third_attempt() {
        assert!(attempt(2, "").is_err());
        assert!(attempt(3, "").is_ok());
    }
}
