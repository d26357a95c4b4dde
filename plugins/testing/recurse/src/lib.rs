//! `recurse`: a misbehaving test plugin that recurses without bound, so the host must report a stack overflow.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::Deserialize;
use serde_json::Value;

/// How deep to recurse.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Input {
    /// Recursion depth; the default is far beyond any stack.
    pub depth: u64,
}

impl Default for Input {
    fn default() -> Self {
        Input { depth: u64::MAX }
    }
}

// Not a tail call and not foldable into a loop: the result of the inner call
// is rotated and mixed, so every level keeps a frame.
#[inline(never)]
fn descend(n: u64, salt: u64) -> u64 {
    if n == 0 {
        salt
    } else {
        descend(n - 1, salt.rotate_left(7) ^ n).rotate_left(3) ^ n
    }
}

/// Recurses `depth` levels.
pub fn run(_ctx: &Context, input: Input) -> Result<Value, StepError> {
    Ok(serde_json::json!({ "value": descend(input.depth, 0x9e37_79b9) }))
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shallow_recursion_returns() {
        let out = clearflow_plugin_sdk::testing::call(run, "", r#"{"depth": 10}"#).unwrap();
        assert!(out["value"].is_u64());
    }
}
