//! Smoke tests: a workflow with parallel branches, waits and a switch runs to the end, and the shipped workflows are valid.

use chrono::{TimeZone, Utc};
use clearflow_core::engine::{self, Env, Event};
use serde_json::json;

#[test]
fn runs() {
    let src = r#"
id: demo
steps:
  - id: a
    set: { x: "${ input.n + 1 }" }
  - id: fork
    parallel:
      branches:
        - steps:
            - id: w
              wait: { for: 1h }
        - steps:
            - id: b
              set: { y: 2 }
  - id: pick
    switch:
      - when: vars.x > 5
        goto: big
  - id: small
    end: small
  - id: big
    end: big
"#;
    let wf = clearflow_core::load("demo.yaml", src).unwrap_or_else(|d| panic!("{d:#?}"));
    let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let cals = clearflow_time::Calendars::default();
    let (mut inst, fx) = engine::create(&wf, "i1".into(), json!({"n": 10}), None, now).unwrap();
    assert!(fx.is_empty());
    let env = Env::new(now, &cals);
    let t = engine::apply(&wf, &mut inst, Event::Start, &env);
    println!("{:#?}", t);
    let timer = match &t.effects[0] {
        engine::Effect::ArmTimer { timer, .. } => *timer,
        e => panic!("{e:?}"),
    };
    let t = engine::apply(
        &wf,
        &mut inst,
        Event::Timer { timer },
        &Env::new(now + chrono::TimeDelta::hours(1), &cals),
    );
    println!("{:#?}", t);
    assert_eq!(inst.status.outcome(), Some("big"));
}

/// The workflows shipped in `workflows/`: every file loads, the catalog has no
/// cross-file problem, every notify step's template exists and reads only what the
/// step provides (the check `clearflow validate` and the daemon make), and every
/// workflow draws as a graph.
#[test]
fn shipped_workflows_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let templates = clearflow_templates::load_dir(&dir.join("templates"))
        .unwrap_or_else(|e| panic!("templates: {e:#?}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut problems = Vec::new();
    let mut workflows = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        match clearflow_core::load(&f.display().to_string(), &src) {
            Ok(wf) => workflows.push(std::sync::Arc::new(wf)),
            Err(d) => problems.extend(d.iter().map(ToString::to_string)),
        }
        // Each file opens with a header comment saying what it encodes and who acts.
        assert!(src.starts_with("# "), "{}: no header comment", f.display());
        assert!(
            src.contains("Role"),
            "{}: the header names no roles",
            f.display()
        );
    }
    for wf in &workflows {
        for node in &wf.nodes {
            let clearflow_core::workflow::NodeKind::Notify(n) = &node.kind else {
                continue;
            };
            let mut provided: std::collections::BTreeSet<String> =
                clearflow_templates::ALWAYS_PROVIDED
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
            if let Some(clearflow_core::expr::Template::Object(entries)) = &n.data {
                provided.extend(entries.iter().map(|(k, _)| k.clone()));
            }
            provided.extend(n.lists.iter().map(|q| q.name.clone()));
            if let Err(p) = templates.check(&n.template, &provided) {
                problems.extend(
                    p.iter()
                        .map(|p| format!("{}: step `{}`: {p}", wf.id, node.id)),
                );
            }
        }
        assert!(
            clearflow_core::graph::mermaid(wf).starts_with("flowchart"),
            "{}",
            wf.id
        );
    }
    let count = workflows.len();
    let (catalog, cross) = clearflow_core::Catalog::build(workflows);
    problems.extend(cross.iter().map(ToString::to_string));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(catalog.workflows.len(), count);
    let ids: Vec<&str> = catalog.workflows.keys().map(String::as_str).collect();
    for id in [
        "complaint-handling",
        "clarification",
        "false-accusation",
        "accountability",
        "fault-tolerance-assessment",
        "follow-up-visits",
        "monthly-joint-review",
        "quarterly-results-digest",
        "campaigns",
    ] {
        assert!(ids.contains(&id), "{id} is not shipped: {ids:?}");
    }
}
