//! `spin`: a misbehaving test plugin that never returns, so the host's deadline must stop it.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde_json::Value;

/// Counts forever; the counter is observed so the loop cannot be optimised away.
pub fn run(_ctx: &Context, _input: Value) -> Result<Value, StepError> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_must_be_json() {
        // The loop itself cannot be tested natively; the SDK rejects bad input before it.
        let err = clearflow_plugin_sdk::testing::call(run, "", "not json").unwrap_err();
        assert!(matches!(err, StepError::InvalidInput(_)));
    }
}
