//! Fan-out benchmark: the time to run a `parallel` of N `set` branches to its end, sliced
//! as the engine slices it (`limits.steps_per_advance` steps per advance, the state
//! written and read back between slices), the time per branch and the longest slice (how
//! long other instances could wait), for N = 100, 1,000 and 10,000. Prints a table.
//!
//! ```text
//! cargo bench -p clearflow-core --bench fanout
//! ```
//!
//! Each branch is one named `set` step, so every branch adds a step result to the
//! instance data: a step context that copied the data would make the cost per branch
//! grow with the width.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use clearflow_core::engine::{self, Env, Event};
use serde_json::json;

fn workflow(branches: usize) -> String {
    let mut s = String::from("id: fanout\nsteps:\n  - id: fork\n    parallel:\n      branches:\n");
    for i in 0..branches {
        s += &format!(
            "        - name: b{i}\n          steps:\n            - id: s{i}\n              set: {{ v{i}: \"${{ input.n }}\" }}\n"
        );
    }
    s += "  - end: done\n";
    s
}

fn main() {
    let calendars = clearflow_time::Calendars::default();
    let now = Utc.with_ymd_and_hms(2025, 1, 6, 1, 0, 0).unwrap();
    for budget in [
        clearflow_core::Limits::default().steps_per_advance,
        u32::MAX,
    ] {
        table(&calendars, now, budget);
    }
}

fn table(calendars: &clearflow_time::Calendars, now: chrono::DateTime<Utc>, budget: u32) {
    let limits = clearflow_core::Limits {
        steps_per_advance: budget,
        ..Default::default()
    };
    println!(
        "clearflow fan-out benchmark: a parallel of N set branches run to its end in slices of \
         {} steps (limits.steps_per_advance), the state written and read back between slices \
         as the engine does between rounds",
        if budget == u32::MAX {
            "unbounded".to_owned()
        } else {
            budget.to_string()
        }
    );
    println!(
        "{:>8}  {:>7}  {:>12}  {:>14}  {:>16}",
        "branches", "slices", "total", "per branch", "longest slice"
    );
    for n in [100usize, 1_000, 10_000] {
        let wf = clearflow_core::load("fanout.yaml", &workflow(n)).unwrap_or_else(|d| {
            panic!(
                "{}",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let runs = if n >= 10_000 { 1 } else { 3 };
        let mut best = (Duration::MAX, 0, Duration::ZERO);
        for _ in 0..runs {
            let (inst, _) =
                engine::create(&wf, "i1".into(), json!({"n": 1}), None, now).expect("create");
            let mut state = serde_json::to_string(&inst).expect("state");
            let started = Instant::now();
            let mut event = Event::Start;
            let mut slices = 0;
            let mut longest = Duration::ZERO;
            let mut steps = 0usize;
            loop {
                let slice = Instant::now();
                let mut inst: engine::Instance = serde_json::from_str(&state).expect("state");
                let env = Env::with_limits(now, calendars, &limits);
                let t = engine::apply(&wf, &mut inst, event, &env);
                state = serde_json::to_string(&inst).expect("state");
                longest = longest.max(slice.elapsed());
                slices += 1;
                steps += t.steps as usize;
                if !t.sliced {
                    assert!(
                        inst.ended(),
                        "the fan-out ran to its end: {:?}",
                        inst.status
                    );
                    break;
                }
                event = Event::Continue;
            }
            assert!(steps > n);
            let took = started.elapsed();
            if took < best.0 {
                best = (took, slices, longest);
            }
        }
        println!(
            "{n:>8}  {:>7}  {:>10.1}ms  {:>12.1}µs  {:>14.1}ms",
            best.1,
            best.0.as_secs_f64() * 1e3,
            best.0.as_secs_f64() * 1e6 / n as f64,
            best.2.as_secs_f64() * 1e3
        );
    }
}
