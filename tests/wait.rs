//! Start and wait: `POST /v1/instances?wait=` and `GET /v1/instances/{id}?wait=` answer
//! once the instance has ended or parked, with its outcome or what it waits for; the
//! CLI's `instances start --wait`; a wait past the limit is refused at the door.

use clearflow_testkit as support;

use std::path::{Path, PathBuf};

use serde_json::json;
use support::model::{InstanceDetail, ProblemBody, StartReply};
use support::{Backend, Daemon};

fn workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/wait/workflows")
}

fn start_and_wait(backend: Backend) {
    let d = Daemon::start(backend, &workflows());

    // A run that ends: the answer carries the outcome and the data, no polling.
    let v: StartReply = d.post_typed(
        "/v1/instances?wait=20s",
        &json!({ "workflow": "quick", "input": { "n": 7 } }),
    );
    let s = v.settled.as_ref().expect("settled");
    assert!(s.settled, "{v:?}");
    assert_eq!(s.status, "completed", "{v:?}");
    assert_eq!(s.outcome.as_deref(), Some("done"), "{v:?}");
    assert_eq!(s.data["vars"]["seen"], 7, "{v:?}");
    assert!(s.ended_at.is_some(), "{v:?}");
    assert_eq!(d.show_instance(&v.id).instance.status, "completed");

    // A run that parks on an event: the answer says what it waits at.
    let v: StartReply = d.post_typed(
        "/v1/instances?wait=20s",
        &json!({ "workflow": "parks", "input": { "key": "k-1" } }),
    );
    let s = v.settled.as_ref().expect("settled");
    assert!(s.settled, "{v:?}");
    assert_eq!(s.status, "running", "{v:?}");
    assert_eq!(s.waiting[0].step, "hold", "{v:?}");
    assert_eq!(s.waiting[0].wait["name"], "go", "{v:?}");
    let parked = v.id;
    // Released by its event, a GET with a wait sees the end.
    d.post("/v1/events", &json!({ "name": "go", "key": "k-1" }));
    let v: InstanceDetail = d.get_typed(&format!("/v1/instances/{parked}?wait=20s"));
    assert_eq!(v.instance.status, "completed", "{v:?}");
    assert_eq!(v.instance.outcome.as_deref(), Some("released"), "{v:?}");

    // Without `wait` nothing changes: the answer is immediate and has no `settled` (the
    // raw body: the typed answer would read an absent and a null `settled` alike).
    let v = d.post(
        "/v1/instances",
        &json!({ "workflow": "quick", "input": { "n": 1 } }),
    );
    assert!(v.get("settled").is_none(), "{v}");

    // Limits and bad values, at the door, in words.
    for (wait, says) in [("2m", "at most 60s"), ("soon", "a duration such as")] {
        let (code, v) = d
            .try_post(
                &format!("/v1/instances?wait={wait}"),
                &json!({ "workflow": "quick", "input": { "n": 1 } }),
            )
            .expect("answer");
        assert_eq!(code, 400, "wait={wait}: {v}");
        let problem: ProblemBody = serde_json::from_value(v.clone()).expect("a problem");
        assert!(problem.detail.contains(says), "wait={wait}: {v}");
    }

    // The CLI waits too and prints the outcome.
    let input = d.workflows_dir().join("../input.json");
    std::fs::write(&input, r#"{"n": 3}"#).expect("input file");
    let input = input.to_str().expect("utf-8 path");
    let out = d.cli_ok(&[
        "instances",
        "start",
        "quick",
        "--input",
        input,
        "--wait",
        "20s",
    ]);
    assert!(out.trim().ends_with("done"), "{out}");
}

#[test]
fn start_and_wait_sqlite() {
    start_and_wait(Backend::Sqlite);
}

#[test]
fn start_and_wait_postgres() {
    start_and_wait(Backend::Postgres);
}
