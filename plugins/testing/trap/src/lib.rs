//! `trap`: a misbehaving test plugin that executes `unreachable`, so the host must report a trap.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde_json::Value;

/// Executes the `unreachable` instruction (aborts when run natively).
pub fn run(_ctx: &Context, _input: Value) -> Result<Value, StepError> {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_checked_before_trapping() {
        let err = clearflow_plugin_sdk::testing::call(run, "", "{").unwrap_err();
        assert!(matches!(err, StepError::InvalidInput(_)));
    }
}
