//! `echo`: a small well-behaved plugin returning its input and config, for host tests and benchmarks.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Optional behaviour switches, so host tests can observe logging paths.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// A message sent through the `log` import at info level.
    pub log: Option<String>,
    /// A message written to stdout.
    pub stdout: Option<String>,
    /// A message written to stderr.
    pub stderr: Option<String>,
}

/// What `echo` returns.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The input, unchanged.
    pub input: Value,
    /// The plugin config, parsed.
    pub config: Value,
    /// The attempt number of the call.
    pub attempt: u32,
}

/// Echoes the input and config back.
pub fn run(ctx: &Context, input: Value) -> Result<Output, StepError> {
    let config: Config = ctx.config()?;
    if let Some(m) = &config.log {
        ctx.info(m);
    }
    if let Some(m) = &config.stdout {
        println!("{m}");
    }
    if let Some(m) = &config.stderr {
        eprintln!("{m}");
    }
    Ok(Output {
        input,
        config: ctx.config()?,
        attempt: ctx.attempt(),
    })
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn returns_input_and_config() {
        let out =
            clearflow_plugin_sdk::testing::call(run, r#"{"log":"hi"}"#, r#"{"a":[1,2]}"#).unwrap();
        assert_eq!(
            out,
            json!({"input": {"a": [1, 2]}, "config": {"log": "hi"}, "attempt": 1})
        );
    }

    #[test]
    fn empty_config_reads_as_null() {
        let out = clearflow_plugin_sdk::testing::call(run, "", "1").unwrap();
        assert_eq!(out["config"], Value::Null);
    }
}
