//! The JSON Schema of workflow files, generated from the definition types.

use crate::definition::WorkflowDef;

/// The JSON Schema for workflow files, pretty-printed with a trailing newline.
pub fn workflow_schema() -> String {
    let schema = schemars::schema_for!(WorkflowDef);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}
