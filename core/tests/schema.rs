//! The committed JSON Schema of workflow files must match the one generated from the types.
//!
//! Regenerate with `CLEARFLOW_BLESS=1 cargo test -p clearflow-core schema`.

use std::path::Path;

#[test]
fn committed_workflow_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/workflow.schema.json");
    let generated = clearflow_core::schema::workflow_schema();
    if std::env::var_os("CLEARFLOW_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing the schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale or missing; regenerate it with `CLEARFLOW_BLESS=1 cargo test -p clearflow-core schema`",
        path.display()
    );
}

#[test]
fn schema_describes_every_step_kind() {
    let schema: serde_json::Value =
        serde_json::from_str(&clearflow_core::schema::workflow_schema()).unwrap();
    let step = &schema["$defs"]["StepDef"]["properties"];
    for kind in [
        "plugin", "task", "notify", "switch", "parallel", "wait", "set", "end", "start", "await",
        "goto",
    ] {
        assert!(step.get(kind).is_some(), "step kind `{kind}` missing");
    }
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
}
