//! Limits enforced by the core: branches per `parallel` at load time, workflows that
//! start themselves without a bound warned about in the catalog, and the loop guard
//! counting steps per path of execution instead of across a fan-out's branches.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use clearflow_core::engine::{self, Env, Event, Status};
use clearflow_core::{Catalog, Limits, Severity, load};
use serde_json::json;

fn fanout(branches: usize, step: &str) -> String {
    let mut s = String::from("id: fanout\nsteps:\n  - id: fork\n    parallel:\n      branches:\n");
    for i in 0..branches {
        s += &format!(
            "        - name: b{i}\n          steps:\n            - id: s{i}\n              {step}\n"
        );
    }
    s += "  - end: done\n";
    s
}

#[test]
fn a_parallel_wider_than_the_limit_is_an_error_at_its_branches() {
    let limits = Limits {
        parallel_branches: 3,
        ..Limits::default()
    };
    let src = fanout(4, "set: { x: 1 }");
    let diags = clearflow_core::compile::load_with_limits("wide.yaml", &src, &limits).unwrap_err();
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "wide.yaml:6:9: error: `parallel` has 4 branches, more than the limit of 3\n  hint: split the work, or raise `limits.parallel_branches`"
        ]
    );
    assert!(
        clearflow_core::compile::load_with_limits("ok.yaml", &fanout(3, "set: { x: 1 }"), &limits)
            .is_ok()
    );
}

fn catalog(files: &[&str]) -> (Catalog, Vec<String>) {
    let wfs = files
        .iter()
        .enumerate()
        .map(|(i, src)| Arc::new(load(&format!("w{i}.yaml"), src).expect("loads")))
        .collect();
    let (catalog, diags) = Catalog::build(wfs);
    for d in &diags {
        assert_eq!(d.severity, Severity::Warning, "{d}");
    }
    (catalog, diags.iter().map(|d| d.to_string()).collect())
}

#[test]
fn a_workflow_starting_itself_is_warned_about_and_kept() {
    let (cat, warnings) = catalog(&[
        "id: again\nsteps:\n  - id: more\n    start: { workflow: again }\n  - end: done\n",
    ]);
    assert_eq!(
        warnings,
        vec![
            "w0.yaml:3:5: warning: step `more` can start its own workflow again without a bound: again → again\n  hint: give the step an `if:` that ends the chain; otherwise starts past `limits.start_depth` are refused"
        ]
    );
    assert!(cat.get("again").is_some(), "a warning keeps the workflow");
}

#[test]
fn a_cycle_of_starts_through_other_workflows_is_warned_about() {
    let (_, warnings) = catalog(&[
        "id: ping\nsteps:\n  - id: to_pong\n    start: { workflow: pong, await: true }\n  - end: done\n",
        "id: pong\nsteps:\n  - id: to_ping\n    start: { workflow: ping }\n  - end: done\n",
    ]);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("ping → pong → ping"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("pong → ping → pong"),
        "{}",
        warnings[1]
    );
}

#[test]
fn a_conditional_self_start_or_a_plain_start_is_not_warned_about() {
    let (_, warnings) = catalog(&[
        "id: again\nsteps:\n  - id: more\n    if: input.depth < 3\n    start: { workflow: again }\n  - id: child\n    start: { workflow: leaf }\n  - end: done\n",
        "id: leaf\nsteps:\n  - end: done\n",
    ]);
    assert_eq!(warnings, Vec::<String>::new());
}

fn run(src: &str) -> Status {
    let wf = load("fanout.yaml", src).unwrap_or_else(|d| panic!("{d:?}"));
    let now = Utc.with_ymd_and_hms(2025, 1, 6, 1, 0, 0).unwrap();
    let calendars = clearflow_time::Calendars::default();
    let (mut inst, _) = engine::create(&wf, "i1".into(), json!({}), None, now).expect("create");
    engine::apply_to_wait(
        &wf,
        &mut inst,
        Event::Start,
        now,
        &calendars,
        &Limits::default(),
    );
    inst.status
}

#[test]
fn a_fan_out_wider_than_the_step_guard_whose_branches_wait_is_not_failed() {
    let n = Limits::default().parallel_branches as usize;
    assert!(n >= Limits::default().steps_without_wait as usize);
    let status = run(&fanout(n, "wait: { for: 1d }"));
    assert_eq!(status, Status::Running);
}

#[test]
fn a_set_fan_out_wider_than_the_step_guard_completes() {
    let n = Limits::default().parallel_branches as usize;
    assert!(n >= Limits::default().steps_without_wait as usize);
    let status = run(&fanout(n, "set: { x: 1 }"));
    assert!(matches!(status, Status::Completed { .. }), "{status:?}");
}

#[test]
fn a_loop_around_a_parallel_is_still_caught() {
    let status = run(
        "id: spin\nsteps:\n  - id: fork\n    parallel:\n      branches:\n        - name: a\n          steps:\n            - id: s\n              set: { x: 1 }\n  - goto: fork\n",
    );
    match status {
        Status::Failed { error, .. } => assert!(error.contains("loops without end"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_advance_stops_after_its_step_budget_and_continues_where_it_stopped() {
    let wf = load("fanout.yaml", &fanout(500, "set: { x: 1 }")).unwrap_or_else(|d| panic!("{d:?}"));
    let now = Utc.with_ymd_and_hms(2025, 1, 6, 1, 0, 0).unwrap();
    let calendars = clearflow_time::Calendars::default();
    let limits = Limits {
        steps_per_advance: 100,
        ..Limits::default()
    };
    let (mut inst, _) = engine::create(&wf, "i1".into(), json!({}), None, now).expect("create");
    let first = engine::apply(
        &wf,
        &mut inst,
        Event::Start,
        &Env::with_limits(now, &calendars, &limits),
    );
    assert!(first.sliced, "the budget ran out");
    assert!(first.steps > 0 && first.steps <= 100, "{}", first.steps);
    assert_eq!(inst.status, Status::Running);
    // The stored state carries the slice: what a continuation in another round reads.
    let mut inst: engine::Instance =
        serde_json::from_str(&serde_json::to_string(&inst).unwrap()).unwrap();
    let mut slices = 1;
    loop {
        let t = engine::apply(
            &wf,
            &mut inst,
            Event::Continue,
            &Env::with_limits(now, &calendars, &limits),
        );
        slices += 1;
        assert!(t.steps <= 100);
        if !t.sliced {
            break;
        }
    }
    assert!(
        matches!(inst.status, Status::Completed { .. }),
        "{:?}",
        inst.status
    );
    assert!(slices > 5, "{slices} slices");
    assert!(
        inst.path_steps.is_empty(),
        "nothing is kept once the instance waits or ends"
    );
}

#[test]
fn the_loop_guard_counts_across_slices() {
    let wf = load(
        "spin.yaml",
        "id: spin\nsteps:\n  - id: again\n    set: { n: 1 }\n  - goto: again\n",
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    let now = Utc.with_ymd_and_hms(2025, 1, 6, 1, 0, 0).unwrap();
    let calendars = clearflow_time::Calendars::default();
    let limits = Limits {
        steps_per_advance: 10,
        steps_without_wait: 25,
        ..Limits::default()
    };
    let (mut inst, _) = engine::create(&wf, "i1".into(), json!({}), None, now).expect("create");
    let t = engine::apply_to_wait(&wf, &mut inst, Event::Start, now, &calendars, &limits);
    assert_eq!(t.steps, 25);
    match inst.status {
        Status::Failed { error, .. } => {
            assert!(
                error.contains("more than 25 steps without waiting"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
}
