//! End-to-end: plugin steps through the real daemon with the real compiled plugins.
//!
//! Misbehaving plugins each fail their step with their own error class in the history,
//! retries follow the step's policy, a plugin asking for forbidden capabilities or with
//! the wrong sha256 stops the daemon at start with a message naming the problem, and
//! after every failure the daemon still runs other instances normally.

use clearflow_testkit as support;

use std::process::Command;

use chrono::TimeDelta;
use serde_json::json;
use support::{Backend, Daemon, Options, fixtures};

fn dist(name: &str) -> String {
    support::dist_plugin(name)
}

fn plugin_config() -> String {
    let mut s = String::from("\n[plugin_host]\ncache_dir = \"plugin-cache\"\n");
    for name in ["echo", "recurse", "panic", "trap", "not-json"] {
        s += &dist(name);
    }
    s += &(dist("spin") + "timeout_ms = 5000\n");
    s += &(dist("hog") + "memory_mib = 16\n");
    s += &(dist("huge-output") + "max_output_bytes = 4096\n");
    s += &(dist("flaky") + "[plugins.config]\nsucceed_on_attempt = 3\n");
    s
}

fn daemon() -> Daemon {
    Daemon::start_with(
        Backend::Sqlite,
        &fixtures().parent().expect("tests/fixtures").join("plugins"),
        Options {
            extra: plugin_config(),
            ..Options::default()
        },
    )
}

fn run(d: &mut Daemon, kind: &str) -> serde_json::Value {
    let id = d.post(
        "/v1/instances",
        &json!({"workflow": "plugin-steps", "input": {"kind": kind, "x": 7}}),
    )["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    d.wait_until(
        &format!("instance {kind} ends or a plugin attempt fails"),
        std::time::Duration::from_secs(60),
        |d| {
            let shown = d.get(&format!("/v1/instances/{id}"));
            shown["instance"]["status"] != "running"
                || shown["history"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|e| e["kind"] == "plugin_attempt_failed"))
        },
    );
    d.get(&format!("/v1/instances/{id}"))
}

fn failure_class(shown: &serde_json::Value) -> String {
    shown["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|h| h["kind"] == "plugin_attempt_failed")
        .map(|h| h["detail"]["class"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("no failed attempt in {shown:#}"))
}

#[test]
fn each_misbehaving_plugin_fails_its_step_with_its_own_class_and_the_daemon_carries_on() {
    let mut d = daemon();
    for (kind, class) in [
        ("spin", "timeout"),
        ("hog", "memory_limit"),
        ("recurse", "stack_overflow"),
        ("panic", "trap"),
        ("trap", "trap"),
        ("huge", "output_too_large"),
        ("notjson", "invalid_output"),
    ] {
        let shown = run(&mut d, kind);
        assert_eq!(failure_class(&shown), class, "{kind}: {shown:#}");
        let status = &shown["instance"]["status"];
        // Timeouts are retried by the default policy; the others fail at once.
        if class == "timeout" {
            assert_eq!(status, "running", "{kind} waits for its retry: {shown:#}");
            let message = shown["history"].to_string();
            assert!(
                message.contains("deadline of 1s exceeded"),
                "the step's tighter timeout applies: {message}"
            );
        } else {
            assert_eq!(status, "failed", "{kind}: {shown:#}");
            let error = shown["result"]["error"].as_str().unwrap_or_default();
            assert!(
                error.contains(class),
                "{kind}: the failure names its class: {error}"
            );
        }
        // The daemon still runs a well-behaved plugin normally.
        let ok = run(&mut d, "echo");
        assert_eq!(ok["instance"]["outcome"], "echoed", "after {kind}: {ok:#}");
        assert_eq!(
            ok["result"]["output"],
            json!({"x": 7, "label": "case 7"}),
            "after {kind}"
        );
    }
}

#[test]
fn a_transient_failure_is_retried_with_the_policy_backoff_then_succeeds() {
    let mut d = daemon();
    let id = d.post(
        "/v1/instances",
        &json!({"workflow": "plugin-steps", "input": {"kind": "flaky"}}),
    )["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let attempts = |d: &Daemon| {
        d.get(&format!("/v1/instances/{id}"))["history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|h| h["kind"] == "plugin_attempt_failed")
            .count()
    };
    d.wait_until(
        "first attempt fails",
        std::time::Duration::from_secs(30),
        |d| attempts(d) == 1,
    );
    // initial 10s, exponential: the second attempt is due after 10 s, the third 20 s later.
    d.advance(TimeDelta::seconds(9));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(attempts(&d), 1, "no retry before the backoff");
    d.advance(TimeDelta::seconds(1));
    d.wait_until(
        "second attempt fails",
        std::time::Duration::from_secs(30),
        |d| attempts(d) == 2,
    );
    d.advance(TimeDelta::seconds(19));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(attempts(&d), 2, "the second delay doubles");
    d.advance(TimeDelta::seconds(1));
    d.wait_until(
        "third attempt succeeds",
        std::time::Duration::from_secs(30),
        |d| d.get(&format!("/v1/instances/{id}"))["instance"]["status"] == "completed",
    );
    let shown = d.get(&format!("/v1/instances/{id}"));
    assert_eq!(shown["instance"]["outcome"], "recovered");
    assert_eq!(shown["data"]["flaky"]["attempt"], 3, "{shown:#}");
}

fn serve_fails_with(extra: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("wf")).expect("dir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n[store]\nurl = \"sqlite://{}/s.db\"\n[workflows]\ndir = \"{}/wf\"\n[plugin_host]\ncache_dir = \"{}/cache\"\n{extra}",
            support::free_port(),
            dir.path().display(),
            dir.path().display(),
            dir.path().display()
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_clearflow"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "serve must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn plugins_asking_for_files_or_sockets_are_refused_at_start_naming_the_import() {
    let err = serve_fails_with(&dist("wants-fs"));
    assert!(err.contains("wasi:filesystem"), "{err}");
    let err = serve_fails_with(&dist("wants-net"));
    assert!(err.contains("wasi:sockets"), "{err}");
}

#[test]
fn a_plugin_whose_sha256_does_not_match_is_refused() {
    let mut decl = dist("echo");
    let at = decl.find("sha256 = \"").expect("a sha256 line") + 10;
    decl.replace_range(at..at + 64, &"0".repeat(64));
    let err = serve_fails_with(&decl);
    assert!(err.contains("sha256"), "{err}");
}

#[test]
fn a_workflow_calling_an_undeclared_plugin_is_refused_at_load() {
    let d = daemon();
    assert!(
        d.logs()
            .contains("calls plugin `nope`, which is not declared"),
        "{}",
        d.logs()
    );
    let (status, _) = d
        .try_post(
            "/v1/instances",
            &json!({"workflow": "undeclared", "input": {}}),
        )
        .expect("the daemon answers");
    assert_eq!(status, 404);
    let (status, _) = d
        .try_post(
            "/v1/instances",
            &json!({"workflow": "plugin-steps", "input": {"kind": "echo", "x": 1}}),
        )
        .expect("the daemon answers");
    assert_eq!(status, 201, "the other workflows still load");
}
