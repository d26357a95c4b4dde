//! Mermaid rendering of a small workflow with a switch, a parallel step and a task.

use pretty_assertions::assert_eq;

#[test]
fn mermaid_draws_switch_parallel_and_task() {
    let wf = clearflow_core::load(
        "graph.yaml",
        r#"
id: graph
title: Small "review"
calendar: cn-mainland
roles: [handler]
steps:
  - id: verify
    task: { role: handler, due: 15wd, on_reject: verify }
  - id: route
    switch:
      - when: verify.outcome == 'unfounded'
        goto: close
  - id: fork
    parallel:
      join: { n: 1 }
      branches:
        - steps:
            - id: tell
              notify: { template: notice, to: "role:handler" }
        - steps:
            - id: pause
              wait: { for: 1d }
  - id: close
    end: closed
"#,
    )
    .unwrap_or_else(|d| panic!("{d:#?}"));
    let expect = r#"flowchart TD
  start(["Small #quot;review#quot;"])
  finish(["end"])
  n0[/"verify<br/>task: handler, due 15wd"/]
  n1{"route<br/>switch"}
  n2[["fork<br/>parallel, join 1"]]
  n3["tell<br/>notify: notice"]
  n4["pause<br/>wait 1d"]
  n5(["end: closed"])
  start --> n0
  n0 -->|"rejected"| n0
  n0 --> n1
  n1 -->|"verify.outcome == 'unfounded'"| n5
  n1 -->|"no case"| n2
  j2{{"join"}}
  n2 --> n3
  n2 --> n4
  j2 --> n5
  n3 --> j2
  n4 --> j2
"#;
    assert_eq!(clearflow_core::graph::mermaid(&wf), expect);
}
