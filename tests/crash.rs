//! Crash recovery end to end: 200 instances run once undisturbed and once with SIGKILLs.
//!
//! Run A starts 200 `crash-case` instances (parallel joins all/any, timers, awaited
//! children and grandchildren, a concurrent start awaited at the end, a `goto` loop, a
//! keyed event) and moves the manual clock in steps until everything has ended. Run B
//! does the same but SIGKILLs the daemon while the starts are being sent and twice while
//! a clock step's commits are in flight, restarting it on the same store each time. Both
//! runs must end with the same instances, statuses, outcomes and histories.
//!
//! Clock steps are 17 minutes and every duration in the fixtures is a whole number of
//! 10 minutes, so no timer falls due exactly on a step: work re-run after a restart
//! (a second later, once the crashed daemon's one-second leases expired) lands in the
//! same step as in run A.

use clearflow_testkit as support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{Backend, Daemon, Options, epoch, fixtures};

const CASES: usize = 200;
const STEPS: i32 = 14;
const KILL_AT_STEPS: [i32; 2] = [4, 8];

fn step(k: i32) -> TimeDelta {
    TimeDelta::minutes(17) * k
}

fn kind(n: usize) -> &'static str {
    ["all", "any", "child", "until", "loop"][n % 5]
}

fn input(n: usize) -> Value {
    let wake = epoch() + TimeDelta::minutes(25) * (n % 7 + 1) as i32 + TimeDelta::seconds(11);
    json!({ "n": n, "case": format!("case-{n}"), "kind": kind(n), "wake": wake.to_rfc3339() })
}

/// Whether case `n` gets its keyed `approve` event (the other `all` cases time out).
fn approved(n: usize) -> bool {
    kind(n) == "all" && n.is_multiple_of(10)
}

/// One instance at the end of a run, named by its root's key and the links leading to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Final {
    workflow: String,
    status: String,
    outcome: Option<String>,
    history: Vec<(String, Option<String>)>,
}

type Snapshot = BTreeMap<String, Final>;

/// Starts case `n`: every tenth through the CLI, the others through the API.
/// Returns the id, or `None` when the daemon did not answer.
fn start_case(d: &Daemon, n: usize) -> Option<(String, bool)> {
    let key = format!("case-{n}");
    if n.is_multiple_of(10) {
        let file = d.dir.path().join(format!("input-{n}.json"));
        std::fs::write(&file, input(n).to_string()).expect("input file");
        let out = d.cli(&[
            "instances",
            "start",
            "crash-case",
            "--input",
            file.to_str().expect("path"),
            "--idempotency-key",
            &key,
            "--json",
        ]);
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
        Some((v["id"].as_str()?.to_owned(), v["created"].as_bool()?))
    } else {
        let body = json!({ "workflow": "crash-case", "input": input(n), "idempotency_key": key });
        match d.try_post("/v1/instances", &body) {
            Ok((201 | 200, v)) => Some((v["id"].as_str()?.to_owned(), v["created"].as_bool()?)),
            Ok((status, v)) => panic!("starting case {n}: {status} {v}"),
            Err(_) => None,
        }
    }
}

/// Sends every start from four threads; with `kill_after`, SIGKILLs the daemon once that
/// many starts were acknowledged. Returns the acknowledged ids by case.
fn start_all(d: &Daemon, kill_after: Option<usize>) -> BTreeMap<usize, String> {
    let acked = AtomicUsize::new(0);
    let ids = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (acked, ids) = (&acked, &ids);
            s.spawn(move || {
                for n in (t..CASES).step_by(4) {
                    match start_case(d, n) {
                        Some((id, _)) => {
                            ids.lock().expect("lock").insert(n, id);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        None if kill_after.is_some() => return,
                        None => panic!("the daemon did not answer the start of case {n}"),
                    }
                }
            });
        }
        if let Some(k) = kill_after {
            let deadline = Instant::now() + Duration::from_secs(120);
            while acked.load(Ordering::SeqCst) < k {
                assert!(Instant::now() < deadline, "starts are too slow");
                std::thread::sleep(Duration::from_millis(2));
            }
            d.signal("KILL");
        }
    });
    ids.into_inner().expect("lock")
}

/// SIGKILLs the daemon as soon as the engine committed something after the clock moved
/// to `to`, then restarts it a little over one lease later.
fn kill_mid_step(d: &mut Daemon, to: chrono::DateTime<chrono::Utc>) {
    let before = d.metric("clearflow_commits_total");
    d.set_clock(to);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.metric("clearflow_commits_total") == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let in_flight = !d.idle();
    d.kill9();
    eprintln!(
        "killed at {to} with work {}",
        if in_flight {
            "in flight"
        } else {
            "already done"
        }
    );
    d.clock_start = to + TimeDelta::milliseconds(1001);
    d.restart();
}

fn run(backend: Backend, crash: bool) -> Snapshot {
    let options = Options {
        engine: "batch_size = 16\nlease_seconds = 1".into(),
        ..Options::default()
    };
    let mut d = Daemon::start_with(backend, &fixtures(), options);

    if crash {
        let before = start_all(&d, Some(CASES / 2));
        assert!(before.len() >= CASES / 2);
        assert!(!d.reap(), "the daemon was killed");
        d.clock_start = epoch() + TimeDelta::milliseconds(1001);
        d.restart();
        let after = start_all(&d, None);
        assert_eq!(after.len(), CASES);
        for (n, id) in &before {
            assert_eq!(
                &after[n], id,
                "case {n} was acknowledged before the crash, then got another id"
            );
        }
    } else {
        assert_eq!(start_all(&d, None).len(), CASES);
    }
    assert_eq!(
        d.list_all("workflow=crash-case").len(),
        CASES,
        "one instance per idempotency key"
    );
    d.settle();

    for k in 1..=STEPS {
        let to = epoch() + step(k);
        if crash && KILL_AT_STEPS.contains(&k) {
            kill_mid_step(&mut d, to);
        } else {
            d.set_clock(to.max(d.now()));
        }
        d.settle();
        if k == 2 {
            for n in (0..CASES).filter(|&n| approved(n)) {
                let v = d.post("/v1/events", &json!({ "name": "approve", "key": format!("case-{n}"), "data": { "by": "e2e" } }));
                assert_eq!(
                    v["delivered_to"].as_array().map(Vec::len),
                    Some(1),
                    "approve for case-{n}: {v}"
                );
            }
            d.settle();
        }
    }

    let running = d.list_all("status=running");
    assert!(
        running.is_empty(),
        "instances still running after the last step: {running:#?}"
    );
    let all = d.list_all("");
    let mut snapshot = Snapshot::new();
    for root in all.iter().filter(|i| i["parent_id"].is_null()) {
        let key = root["idempotency_key"]
            .as_str()
            .expect("every root has a key")
            .to_owned();
        collect(&d, root["id"].as_str().expect("id"), key, &mut snapshot);
    }
    assert_eq!(
        snapshot.len(),
        all.len(),
        "every instance descends from a root"
    );
    d.terminate();
    snapshot
}

fn collect(d: &Daemon, id: &str, name: String, out: &mut Snapshot) {
    let shown = d.instance(id);
    let i = &shown["instance"];
    assert_eq!(
        shown["pending"].as_array().map(Vec::len),
        Some(0),
        "{name} has pending work: {}",
        shown["pending"]
    );
    for c in shown["children"].as_array().expect("children") {
        let link = c["parent_link"].as_str().expect("a child has a link");
        collect(
            d,
            c["id"].as_str().expect("id"),
            format!("{name}/{link}"),
            out,
        );
    }
    let prev = out.insert(
        name.clone(),
        Final {
            workflow: i["workflow"].as_str().expect("workflow").to_owned(),
            status: i["status"].as_str().expect("status").to_owned(),
            outcome: i["outcome"].as_str().map(str::to_owned),
            history: support::history_of(&shown),
        },
    );
    assert!(prev.is_none(), "two instances are named {name}");
}

/// What every run must reach, crash or not: the fixtures' own meaning.
fn check_expected(s: &Snapshot) {
    let children = (0..CASES).filter(|n| kind(*n) == "child").count();
    let grandchildren = (0..CASES)
        .filter(|n| kind(*n) == "child" && n.is_multiple_of(2))
        .count();
    assert_eq!(
        s.len(),
        2 * CASES + children + grandchildren,
        "instances, children included"
    );
    for n in 0..CASES {
        let root = &s[&format!("case-{n}")];
        let expected = if n.is_multiple_of(3) {
            "severe"
        } else {
            "mild"
        };
        assert_eq!(
            (root.status.as_str(), root.outcome.as_deref()),
            ("completed", Some(expected)),
            "case-{n}: {root:?}"
        );
        let review = &s[&format!("case-{n}/review")];
        assert_eq!(review.outcome.as_deref(), Some(expected));
        let completed = |step: &str| {
            root.history
                .iter()
                .filter(|(k, st)| k == "step_completed" && st.as_deref() == Some(step))
                .count()
        };
        match kind(n) {
            "loop" => assert_eq!(completed("nap"), 3, "case-{n} loops three times"),
            "all" => {
                let approval = root
                    .history
                    .iter()
                    .any(|(k, st)| k == "signal_received" && st.as_deref() == Some("approval"));
                let timed_out = root
                    .history
                    .iter()
                    .any(|(k, st)| k == "wait_timed_out" && st.as_deref() == Some("approval"));
                assert_eq!(
                    (approval, timed_out),
                    (approved(n), !approved(n)),
                    "case-{n}: {:?}",
                    root.history
                );
            }
            _ => {}
        }
    }
    for (name, f) in s {
        assert_eq!(f.status, "completed", "{name}: {f:?}");
        // Only crash-case loops; in every other place a step completes at most once.
        let mut seen = BTreeMap::new();
        for (kind, step) in &f.history {
            if kind == "step_completed" {
                *seen.entry(step.clone()).or_insert(0) += 1;
            }
        }
        for (step, times) in seen {
            let loops = f.workflow == "crash-case"
                && matches!(step.as_deref(), Some("again" | "nap" | "back"));
            assert!(
                times == 1 || loops,
                "{name}: step {step:?} completed {times} times: {:?}",
                f.history
            );
        }
    }
}

fn crash_and_restart_reach_the_same_end(backend: Backend) {
    let started = Instant::now();
    let undisturbed = run(backend, false);
    check_expected(&undisturbed);
    let crashed = run(backend, true);
    check_expected(&crashed);
    assert_eq!(
        undisturbed.len(),
        crashed.len(),
        "instance count differs after crashes"
    );
    for (name, a) in &undisturbed {
        let b = crashed
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing after the crashes"));
        assert_eq!(a, b, "{name} ended differently after the crashes");
    }
    eprintln!("{backend:?}: both runs took {:?}", started.elapsed());
}

#[test]
fn sigkill_during_200_instances_changes_nothing_sqlite() {
    crash_and_restart_reach_the_same_end(Backend::Sqlite);
}

#[test]
fn sigkill_during_200_instances_changes_nothing_postgres() {
    crash_and_restart_reach_the_same_end(Backend::Postgres);
}
