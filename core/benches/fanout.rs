//! Fan-out benchmark: the time one `apply` takes to run a `parallel` of N `set` branches,
//! and the time per branch, for N = 100, 1,000 and 10,000. Prints a table; asserts nothing.
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
    println!("clearflow fan-out benchmark: one apply of a parallel of N set branches");
    println!("{:>8}  {:>12}  {:>14}", "branches", "total", "per branch");
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
        let mut best = Duration::MAX;
        for _ in 0..runs {
            let (mut inst, _) =
                engine::create(&wf, "i1".into(), json!({"n": 1}), None, now).expect("create");
            let env = Env {
                now,
                calendars: &calendars,
            };
            let started = Instant::now();
            let t = engine::apply(&wf, &mut inst, Event::Start, &env);
            best = best.min(started.elapsed());
            assert!(
                inst.ended(),
                "the fan-out ran to its end: {:?}",
                inst.status
            );
            assert!(t.steps as usize > n);
        }
        println!(
            "{n:>8}  {:>10.1}ms  {:>12.1}µs",
            best.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e6 / n as f64
        );
    }
}
