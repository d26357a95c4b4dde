//! `wants-fs`: a misbehaving test plugin that reads a file, which the sandbox must not allow.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::Deserialize;
use serde_json::Value;

/// Which file to read.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Input {
    /// Path of the file; `/etc/passwd` by default.
    pub path: String,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            path: "/etc/passwd".to_owned(),
        }
    }
}

/// Reads the file and returns its length.
pub fn run(_ctx: &Context, input: Input) -> Result<Value, StepError> {
    let bytes = std::fs::read(&input.path)
        .map_err(|e| StepError::permanent(format!("cannot read {}: {e}", input.path)))?;
    Ok(serde_json::json!({ "len": bytes.len() }))
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_permanent() {
        let err =
            clearflow_plugin_sdk::testing::call(run, "", r#"{"path": "/nonexistent/clearflow"}"#)
                .unwrap_err();
        assert!(
            matches!(err, StepError::Permanent(m) if m.starts_with("cannot read /nonexistent/clearflow"))
        );
    }
}
