//! `huge-output`: a misbehaving test plugin returning more output than the host accepts.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};

/// How much to return.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Input {
    /// Size of the returned `data` string in bytes; 2 MiB by default.
    pub bytes: usize,
}

impl Default for Input {
    fn default() -> Self {
        Input { bytes: 2 << 20 }
    }
}

/// The oversized output.
#[derive(Debug, Serialize)]
pub struct Output {
    /// `bytes` copies of `x`.
    pub data: String,
}

/// Returns a string of `bytes` bytes.
pub fn run(_ctx: &Context, input: Input) -> Result<Output, StepError> {
    Ok(Output {
        data: "x".repeat(input.bytes),
    })
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_two_mib() {
        let out = clearflow_plugin_sdk::testing::call(run, "", "{}").unwrap();
        assert_eq!(out["data"].as_str().unwrap().len(), 2 << 20);
    }
}
