//! `hog`: a misbehaving test plugin that allocates without bound, so the host's memory limit must stop it.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::Deserialize;
use serde_json::Value;

/// How much to allocate; unbounded by default.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Input {
    /// Stop after this many MiB; `None` never stops.
    pub max_mib: Option<u64>,
}

/// Allocates and touches 1 MiB blocks until `max_mib` or the host's limit.
pub fn run(_ctx: &Context, input: Input) -> Result<Value, StepError> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut mib: u64 = 0;
    while input.max_mib.is_none_or(|max| mib < max) {
        // Touch the pages so the allocation is real, not just reserved.
        blocks.push(vec![(mib % 251) as u8 + 1; 1 << 20]);
        mib += 1;
    }
    let checksum: u64 = blocks.iter().map(|b| u64::from(b[b.len() - 1])).sum();
    Ok(serde_json::json!({ "mib": mib, "checksum": checksum }))
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_allocation_returns() {
        let out = clearflow_plugin_sdk::testing::call(run, "", r#"{"max_mib": 3}"#).unwrap();
        assert_eq!(out["mib"], 3);
        assert_eq!(out["checksum"], 1 + 2 + 3);
    }
}
