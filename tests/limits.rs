//! Limits at the door, through the real daemon: a self-starting workflow stops at
//! `limits.start_depth` with the chain named and is cancelled as a tree (a detached
//! child excepted); a plugin output nested past `limits.json_depth` is refused and the
//! instance stays readable; a plugin writing 100 MB of log leaves at most
//! `limits.plugin_log_bytes` of it in the daemon's log; and an unrelated instance
//! completes within a second while a 10,000-branch fan-out runs.

use clearflow_testkit as support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Backend, Daemon, Options};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/limits/workflows")
}

fn daemon(backend: Backend, workflows: &Path, limits: &str) -> Daemon {
    let mut extra = format!("\n[limits]\n{limits}\n");
    extra += "\n[plugin_host]\ncache_dir = \"plugin-cache\"\n";
    extra += &support::dist_plugin("echo");
    extra += &support::dist_plugin("chatty");
    Daemon::start_with(
        backend,
        workflows,
        Options {
            extra,
            ..Options::default()
        },
    )
}

fn status(d: &Daemon, id: &str) -> String {
    d.instance(id)["instance"]["status"]
        .as_str()
        .expect("status")
        .to_owned()
}

fn self_start_is_bounded_and_cancelled_as_a_tree(backend: Backend) {
    let mut d = daemon(backend, &fixtures(), "start_depth = 4");
    let (root, _) = d.start_instance("again", &json!({}), None);
    d.wait_until(
        "the chain of starts stops at the limit",
        Duration::from_secs(60),
        |d| {
            d.list_all("workflow=again").len() == 4
                && d.list_all("workflow=again")
                    .iter()
                    .all(|i| i["wake_at"].is_null())
        },
    );
    d.settle();
    let chain = d.list_all("workflow=again");
    assert_eq!(chain.len(), 4, "the root and three generations, no more");
    let refused: Vec<Value> = chain
        .iter()
        .map(|i| d.instance(i["id"].as_str().expect("id")))
        .filter(|shown| shown.to_string().contains("limits.start_depth"))
        .collect();
    assert_eq!(refused.len(), 1, "only the deepest start is refused");
    let text = refused[0].to_string();
    assert!(
        text.contains("nesting depth of starts limit exceeded: 5 is more than 4"),
        "{text}"
    );
    assert!(text.contains("again → again → again → again"), "{text}");
    assert_eq!(
        refused[0]["instance"]["status"], "running",
        "it still waits"
    );

    // Cancelling the root reaches every generation, one level per transaction.
    d.post(
        &format!("/v1/instances/{root}/cancel"),
        &json!({ "reason": "test" }),
    );
    d.wait_until(
        "the whole chain is cancelled",
        Duration::from_secs(60),
        |d| {
            d.list_all("workflow=again")
                .iter()
                .all(|i| i["status"] == "cancelled")
        },
    );
    let deepest = refused[0]["instance"]["id"].as_str().expect("id");
    let text = d.instance(deepest).to_string();
    assert!(
        text.contains("was cancelled: test"),
        "the reason names the parent's cancellation: {text}"
    );

    // A detached child runs on; the other is cancelled with its parent.
    let (keeper, _) = d.start_instance("keeper", &json!({}), None);
    d.settle();
    let children = d.list_all("workflow=leaf");
    assert_eq!(children.len(), 2);
    d.post(&format!("/v1/instances/{keeper}/cancel"), &json!(null));
    d.wait_until(
        "the owned child is cancelled",
        Duration::from_secs(60),
        |d| {
            d.list_all("workflow=leaf")
                .iter()
                .any(|i| i["status"] == "cancelled")
        },
    );
    d.settle();
    let mut states: Vec<String> = d
        .list_all("workflow=leaf")
        .iter()
        .map(|i| i["status"].as_str().expect("status").to_owned())
        .collect();
    states.sort();
    assert_eq!(states, ["cancelled", "running"]);
    assert_eq!(status(&d, &keeper), "cancelled");
}

#[test]
fn self_start_is_bounded_and_cancelled_as_a_tree_sqlite() {
    self_start_is_bounded_and_cancelled_as_a_tree(Backend::Sqlite);
}

#[test]
fn self_start_is_bounded_and_cancelled_as_a_tree_postgres() {
    self_start_is_bounded_and_cancelled_as_a_tree(Backend::Postgres);
}

#[test]
fn a_plugin_output_too_deep_to_read_back_is_refused_and_the_instance_stays_readable() {
    let mut d = daemon(Backend::Sqlite, &fixtures(), "");
    let (id, _) = d.start_instance("deep", &json!({}), None);
    d.wait_until("the instance fails", Duration::from_secs(60), |d| {
        status(d, &id) == "failed"
    });
    let (code, shown) = d.try_get(&format!("/v1/instances/{id}")).expect("http");
    assert_eq!(code, 200, "the instance reads back: {shown}");
    let text = shown.to_string();
    assert!(text.contains("output_invalid"), "{text}");
    assert!(text.contains("limits.json_depth"), "{text}");
    // The daemon runs other instances normally.
    let v = d.post(
        "/v1/instances?wait=20s",
        &json!({ "workflow": "calm", "input": {} }),
    );
    assert_eq!(v["settled"]["status"], "completed", "{v}");
}

#[test]
fn a_plugin_writing_100_mb_of_log_leaves_at_most_the_limit_in_the_daemon_log() {
    let mut d = daemon(Backend::Sqlite, &fixtures(), "plugin_log_bytes = 4096");
    let (id, _) = d.start_instance("chatty", &json!({}), None);
    d.wait_until("the instance completes", Duration::from_secs(120), |d| {
        status(d, &id) == "completed"
    });
    let log = d.logs();
    let xs = log.matches('x').count();
    let es = log.matches('e').count();
    assert!(xs > 0, "some of the plugin's log is kept");
    // Every `x` and `e` of the daemon's own lines together stay far below a single line
    // of the plugin's 1,000-byte lines beyond the limit.
    assert!(
        xs <= 4096 + 2_000,
        "{xs} bytes of the plugin's log lines reached the daemon log"
    );
    assert!(
        es <= 4096 + 20_000,
        "{es} bytes of stderr reached the daemon log"
    );
    assert!(
        log.len() < 1 << 20,
        "the daemon log is {} bytes after a call that wrote 101 MB",
        log.len()
    );
    assert!(log.contains("truncated"), "the cut is marked");
}

/// A `parallel` of `n` branches, each a `set`.
fn wide(n: usize) -> String {
    let mut s = String::from(
        "id: wide\ntitle: 宽扇出 a wide fan-out (limits test)\nsteps:\n  - id: fork\n    parallel:\n      branches:\n",
    );
    for i in 0..n {
        s += &format!(
            "        - name: b{i}\n          steps:\n            - id: s{i}\n              set: {{ v{i}: {i} }}\n"
        );
    }
    s += "  - end: done\n";
    s
}

#[test]
fn an_unrelated_instance_completes_within_a_second_while_a_10000_branch_fan_out_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    support::copy_workflows(&fixtures(), dir.path());
    std::fs::write(dir.path().join("wide.yaml"), wide(10_000)).expect("wide.yaml");
    let mut d = daemon(Backend::Sqlite, dir.path(), "steps_per_advance = 200");
    let (fan, _) = d.start_instance("wide", &json!({}), None);
    d.wait_until("the fan-out has begun", Duration::from_secs(60), |d| {
        d.instance(&fan)["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|e| e["kind"] == "step_completed"))
    });
    let mut completed_while_running = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let v = d.post(
            "/v1/instances?wait=20s",
            &json!({ "workflow": "calm", "input": {} }),
        );
        let took = started.elapsed();
        assert_eq!(v["settled"]["status"], "completed", "{v}");
        assert!(
            took < Duration::from_secs(1),
            "an unrelated instance took {took:?} while the fan-out ran"
        );
        if status(&d, &fan) == "running" {
            completed_while_running += 1;
        }
    }
    assert!(
        completed_while_running > 0,
        "the fan-out ended before any unrelated instance was started; nothing was shown"
    );
    d.wait_until("the fan-out completes", Duration::from_secs(300), |d| {
        status(d, &fan) == "completed"
    });
    let vars = &d.instance(&fan)["data"]["vars"];
    assert_eq!(
        vars.as_object().map(|v| v.len()),
        Some(10_000),
        "every branch ran once, across the slices"
    );
}
