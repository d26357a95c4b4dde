//! `panic`: a misbehaving test plugin that panics, so the host must report a trap with the panic message.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde_json::Value;

/// Panics with a message naming the step.
pub fn run(ctx: &Context, _input: Value) -> Result<Value, StepError> {
    panic!("plugin gave up in step {}", ctx.step());
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "plugin gave up in step test-step")]
    fn panics_with_step_name() {
        let _ = clearflow_plugin_sdk::testing::call(run, "", "{}");
    }
}
