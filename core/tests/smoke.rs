//! Smoke test: a workflow with parallel branches, waits and a switch runs to the end.

use chrono::{TimeZone, Utc};
use clearflow_core::engine::{self, Event};
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
    let env = engine::Env {
        now,
        calendars: &cals,
    };
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
        &engine::Env {
            now: now + chrono::TimeDelta::hours(1),
            calendars: &cals,
        },
    );
    println!("{:#?}", t);
    assert_eq!(inst.status.outcome(), Some("big"));
}
