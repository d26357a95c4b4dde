//! Checks of the shipped workflows' forms: every field has a title to show.

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Field paths under `schema` with no `title`, and enums without labels.
    fn untitled(schema: &Value, path: &str, out: &mut Vec<String>) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (k, p) in props {
            let here = format!("{path}{k}");
            if p.get("title")
                .and_then(Value::as_str)
                .is_none_or(|t| t.trim().is_empty())
            {
                out.push(here.clone());
            }
            if let Some(one_of) = p.get("oneOf").and_then(Value::as_array) {
                for o in one_of {
                    if o.get("const").is_none() || o.get("title").is_none() {
                        out.push(format!("{here} (oneOf entry without const and title)"));
                    }
                }
            }
            untitled(p, &format!("{here}."), out);
            if let Some(items) = p.get("items") {
                untitled(items, &format!("{here}[]."), out);
            }
        }
    }

    #[test]
    fn labelled_enums_still_refuse_other_values() {
        let name = "complaint-handling.yaml";
        let src = std::fs::read_to_string(format!(
            "{}/../workflows/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let wf = clearflow_core::load(name, &src).unwrap_or_else(|d| panic!("{d:?}"));
        let clearflow_core::workflow::NodeKind::Task(t) = &wf.node_by_id("screen").unwrap().kind
        else {
            panic!("screen is a task")
        };
        let form = t.form.as_ref().unwrap();
        assert!(
            form.violations(&serde_json::json!({"decision": "accept"}))
                .is_empty()
        );
        assert!(
            !form
                .violations(&serde_json::json!({"decision": "bogus"}))
                .is_empty()
        );
        assert!(!form.violations(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn every_shipped_form_field_has_a_title() {
        let dir = format!("{}/../workflows", env!("CARGO_MANIFEST_DIR"));
        let mut problems = Vec::new();
        let mut checked = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if !name.ends_with(".yaml") {
                continue;
            }
            let src = std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
            let wf = clearflow_core::load(&name, &src).unwrap_or_else(|d| panic!("{name}: {d:?}"));
            let mut out = Vec::new();
            if let Some(s) = &wf.input_schema {
                untitled(&s.json, "input.", &mut out);
                checked += 1;
            }
            for node in &wf.nodes {
                if let clearflow_core::workflow::NodeKind::Task(t) = &node.kind
                    && let Some(form) = &t.form
                {
                    untitled(&form.json, &format!("{}.", node.id), &mut out);
                    checked += 1;
                }
            }
            problems.extend(out.into_iter().map(|p| format!("{name}: {p}")));
        }
        assert!(checked > 20, "{checked}");
        assert!(
            problems.is_empty(),
            "fields without a title:\n{}",
            problems.join("\n")
        );
    }
}
