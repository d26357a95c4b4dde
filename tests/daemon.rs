//! The daemon and CLI as a user meets them: validate, graph, idempotent starts, SIGHUP
//! reloads, SIGTERM, configuration errors and overrides, timers after downtime, health.

use clearflow_testkit as support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::model::{InstanceDetail, InstancePage, ProblemBody, WorkflowDetail};
use support::{BIN, Backend, Daemon, Options, epoch, fixtures};

fn clearflow(args: &[&str]) -> std::process::Output {
    Command::new(&*BIN)
        .args(args)
        .output()
        .expect("running clearflow")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A folder holding one workflow file `NAME.yaml` with `source`.
fn workflows_with(name: &str, source: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(format!("{name}.yaml")), source).expect("writing a workflow");
    dir
}

#[test]
fn validate_exits_0_for_the_fixture_folder() {
    let out = clearflow(&["validate", fixtures().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for id in [
        "crash-case",
        "crash-review",
        "crash-child",
        "crash-grandchild",
        "cs-parent",
        "cs-partner",
        "timers",
    ] {
        assert!(
            stdout.contains(&format!("ok  {id} ")),
            "{id} missing from:\n{stdout}"
        );
    }
    let out = clearflow(&["validate", "--json", fixtures().to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(v["valid"], true);
    assert_eq!(v["workflows"].as_array().map(Vec::len), Some(7));
    assert_eq!(v["diagnostics"].as_array().map(Vec::len), Some(0));
}

#[test]
fn validate_exits_1_with_file_line_col_for_a_bad_file() {
    let dir = workflows_with(
        "bad",
        "id: bad\nsteps:\n  - id: nap\n    wait: { for: 3 days }\n  - goto: nowhere\n",
    );
    let file = dir.path().join("bad.yaml");
    let out = clearflow(&["validate", file.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let prefix = format!("{}:", file.display());
    let located: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert!(
        located.len() >= 2,
        "every problem at once, each with file:line:col:\n{stderr}"
    );
    assert!(
        located
            .iter()
            .any(|l| l.starts_with(&format!("{prefix}4:18: error"))),
        "the bad duration at 4:18:\n{stderr}"
    );
    assert!(
        located
            .iter()
            .any(|l| l.starts_with(&format!("{prefix}5:")) && l.contains("nowhere")),
        "the dangling goto on line 5:\n{stderr}"
    );

    let out = clearflow(&["validate", "--json", file.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(v["valid"], false);
    let diags = v["diagnostics"].as_array().expect("diagnostics");
    assert!(diags.len() >= 2, "{v:#}");
    assert!(
        diags.iter().all(|d| d.to_string().contains("bad.yaml")),
        "{v:#}"
    );
}

#[test]
fn graph_prints_a_mermaid_flowchart() {
    let file = fixtures().join("crash-case.yaml");
    let out = clearflow(&["graph", file.to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("flowchart TD\n"), "{stdout}");
    for step in ["fan_all", "fan_any", "spawn", "again", "finish"] {
        assert!(
            stdout.contains(step),
            "{step} missing from the graph:\n{stdout}"
        );
    }
    let bad = workflows_with("bad", "id: bad\nsteps: 3\n");
    let out = clearflow(&["graph", bad.path().join("bad.yaml").to_str().expect("path")]);
    assert_eq!(out.status.code(), Some(1), "a broken file has no graph");
}

#[test]
fn the_same_idempotency_key_returns_the_same_instance() {
    let mut d = Daemon::start(Backend::Sqlite, &fixtures());
    let input = d.dir.path().join("input.json");
    std::fs::write(&input, r#"{"who": "kim"}"#).expect("input");
    let input = input.to_str().expect("path");
    let first = d.cli_ok(&[
        "instances",
        "start",
        "cs-parent",
        "--input",
        input,
        "--idempotency-key",
        "k-1",
    ]);
    let again = d.cli_ok(&[
        "instances",
        "start",
        "cs-parent",
        "--input",
        input,
        "--idempotency-key",
        "k-1",
    ]);
    let other = d.cli_ok(&[
        "instances",
        "start",
        "cs-parent",
        "--input",
        input,
        "--idempotency-key",
        "k-2",
    ]);
    assert!(!first.trim().is_empty());
    assert_eq!(first, again, "the same key started a second instance");
    assert_ne!(first, other);
    let (api_id, created) = d.start_instance("cs-parent", &json!({"who": "kim"}), Some("k-1"));
    assert_eq!((api_id.as_str(), created), (first.trim(), false));

    let listed: InstancePage = serde_json::from_str(&d.cli_ok(&[
        "instances",
        "list",
        "--workflow",
        "cs-parent",
        "--json",
    ]))
    .expect("json");
    assert_eq!(listed.items.len(), 2);
    let shown: InstanceDetail =
        serde_json::from_str(&d.cli_ok(&["instances", "show", first.trim(), "--json"]))
            .expect("json");
    assert_eq!(shown.instance.idempotency_key.as_deref(), Some("k-1"));
    d.terminate();
}

const HUP_V1: &str = "id: hup\nsteps:\n  - id: nap\n    wait: { for: 1h }\n  - end: v1\n";
const HUP_BROKEN: &str = "id: hup\nsteps:\n  - id: nap\n    wait: { for: 1 hour }\n  - end: v1\n";
const HUP_V2: &str = "id: hup\nsteps:\n  - id: nap\n    wait: { for: 1h }\n  - end: v2\n";

fn version(d: &Daemon) -> String {
    d.get_typed::<WorkflowDetail>("/v1/workflows/hup")
        .summary
        .version
}

fn outcome(d: &Daemon, id: &str) -> Option<String> {
    d.show_instance(id).instance.outcome
}

fn def_hash(d: &Daemon, id: &str) -> String {
    d.show_instance(id).instance.def_hash
}

#[test]
fn sighup_with_a_broken_file_keeps_the_old_version_and_a_changed_file_pins_running_instances() {
    let wf = workflows_with("hup", HUP_V1);
    let mut d = Daemon::start(Backend::Sqlite, wf.path());
    let v1 = version(&d);
    let (old, _) = d.start_instance("hup", &json!({}), None);
    d.settle();
    assert_eq!(def_hash(&d, &old), v1);

    std::fs::write(d.workflows_dir().join("hup.yaml"), HUP_BROKEN).expect("breaking the file");
    d.signal("HUP");
    d.wait_until(
        "the reload reports the broken file",
        Duration::from_secs(30),
        |d| {
            d.logs()
                .contains("keeping the previous version of `hup` active")
        },
    );
    assert!(
        d.logs().contains("hup.yaml:4:"),
        "the error names file:line:\n{}",
        d.logs()
    );
    assert_eq!(
        version(&d),
        v1,
        "a broken file must not replace the running version"
    );
    let (during, _) = d.start_instance("hup", &json!({}), None);
    assert_eq!(def_hash(&d, &during), v1);

    std::fs::write(d.workflows_dir().join("hup.yaml"), HUP_V2).expect("changing the file");
    d.signal("HUP");
    d.wait_until("the new version is active", Duration::from_secs(30), |d| {
        version(d) != v1
    });
    let v2 = version(&d);
    let (new, _) = d.start_instance("hup", &json!({}), None);
    assert_eq!(def_hash(&d, &new), v2, "new instances use the new version");
    assert_eq!(
        def_hash(&d, &old),
        v1,
        "a running instance keeps its version"
    );

    d.advance(TimeDelta::hours(2));
    d.settle();
    assert_eq!(outcome(&d, &old).as_deref(), Some("v1"));
    assert_eq!(outcome(&d, &during).as_deref(), Some("v1"));
    assert_eq!(outcome(&d, &new).as_deref(), Some("v2"));

    // After a restart the old version comes back from the store, not from the file.
    let (old2, _) = d.start_instance("hup", &json!({}), None);
    d.settle();
    std::fs::write(
        d.workflows_dir().join("hup.yaml"),
        HUP_V1.replace("v1", "v3"),
    )
    .expect("changing the file");
    d.kill9();
    d.clock_start += TimeDelta::hours(2);
    d.restart();
    d.advance(TimeDelta::hours(2));
    d.settle();
    assert_eq!(def_hash(&d, &old2), v2);
    assert_eq!(outcome(&d, &old2).as_deref(), Some("v2"));
    d.terminate();
}

#[test]
fn sigterm_exits_0_after_draining() {
    let mut d = Daemon::start(Backend::Sqlite, &fixtures());
    d.start_instance("cs-parent", &json!({"who": "x"}), None);
    d.terminate();
    assert!(d.logs().contains("SIGTERM"), "{}", d.logs());
}

/// Runs `clearflow serve` with `config`, expecting it to exit on its own within 30 s.
fn serve_with(config: &str, env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("clearflow.toml");
    std::fs::write(&file, config).expect("config");
    let mut cmd = Command::new(&*BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(&file)
        .current_dir(dir.path())
        .env_remove("CLEARFLOW__STORE__URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("running clearflow serve");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "clearflow serve accepted the configuration and kept running:\n{}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let out = serve_with("[store]\nurll = \"sqlite://x.db\"\n", &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("urll"),
        "the error names the key:\n{stderr}"
    );

    let out = serve_with(
        "[server]\nlisten = \"127.0.0.1:0\"\n",
        &[("CLEARFLOW__ENGINE__BATCH_SIZZE", "3")],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("batch_sizze"),
        "an unknown override is named too:\n{stderr}"
    );
}

#[test]
fn clearflow_store_url_overrides_the_config_file() {
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let db = elsewhere.path().join("override.db");
    let env = vec![(
        "CLEARFLOW__STORE__URL".to_owned(),
        format!("sqlite://{}", db.display()),
    )];
    let mut d = Daemon::start_with(
        Backend::Sqlite,
        &fixtures(),
        Options {
            env,
            ..Options::default()
        },
    );
    let (id, _) = d.start_instance("cs-parent", &json!({"who": "o"}), None);
    assert!(db.exists(), "the overriding store was not created");
    let configured = d.store_url.trim_start_matches("sqlite://").to_owned();
    assert!(
        !Path::new(&configured).exists(),
        "the daemon also opened the configured store"
    );
    d.terminate();
    // Without the override the same daemon opens the configured store, which lacks it
    // (and the harness's token, so a new one is made there).
    d.options.env.clear();
    d.token = None;
    d.restart();
    assert_eq!(
        d.try_get(&format!("/v1/instances/{id}")).expect("answer").0,
        404,
        "the instance went to the configured store"
    );
    assert!(Path::new(&configured).exists());
    d.terminate();
}

fn timers_that_fell_due_during_downtime_fire_once_in_order(backend: Backend) {
    let wf = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        fixtures().join("timers.yaml"),
        wf.path().join("timers.yaml"),
    )
    .expect("copy");
    let mut d = Daemon::start(backend, wf.path());
    let ids: Vec<String> = (0..3)
        .map(|_| d.start_instance("timers", &json!({}), None).0)
        .collect();
    d.settle();
    for id in &ids {
        assert_eq!(d.show_instance(id).pending.len(), 3, "three timer rows");
    }
    d.kill9();
    // Down for five hours: all three timers of every instance fell due meanwhile.
    d.clock_start = epoch() + TimeDelta::hours(5);
    d.restart();
    d.wait_until("every instance ended", Duration::from_secs(60), |d| {
        d.list_all("status=running").is_empty()
    });
    for id in &ids {
        let shown = d.show_instance(id);
        assert_eq!(shown.instance.outcome.as_deref(), Some("rang"));
        let fired: Vec<String> = support::history_steps(&shown)
            .into_iter()
            .filter(|(k, s)| {
                k == "step_completed" && matches!(s.as_deref(), Some("first" | "second" | "third"))
            })
            .map(|(_, s)| s.expect("step"))
            .collect();
        assert_eq!(
            fired,
            ["first", "second", "third"],
            "due order, each once: {:?}",
            support::history_steps(&shown)
        );
        assert!(
            !support::history_steps(&shown)
                .iter()
                .any(|(k, _)| k == "event_ignored"),
            "a timer fired twice"
        );
        assert_eq!(shown.pending.len(), 0);
    }
    d.terminate();
}

#[test]
fn timers_that_fell_due_during_downtime_fire_once_in_order_sqlite() {
    timers_that_fell_due_during_downtime_fire_once_in_order(Backend::Sqlite);
}

#[test]
fn timers_that_fell_due_during_downtime_fire_once_in_order_postgres() {
    timers_that_fell_due_during_downtime_fire_once_in_order(Backend::Postgres);
}

#[test]
fn health_readiness_and_problem_json_for_404() {
    let mut d = Daemon::start(Backend::Sqlite, &fixtures());
    let http = reqwest::blocking::Client::new();
    let token = d.token.clone().expect("token");
    let get = |path: &str| {
        http.get(format!("{}{path}", d.url()))
            .bearer_auth(&token)
            .send()
            .expect("GET")
    };
    let r = get("/healthz");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(get("/readyz").status().as_u16(), 200);
    for path in [
        "/no/such/endpoint",
        "/v1/instances/00000000-0000-0000-0000-000000000000",
        "/v1/workflows/nope",
    ] {
        let r = get(path);
        assert_eq!(r.status().as_u16(), 404, "{path}");
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(ct, "application/problem+json", "{path}");
        let body: ProblemBody = r.json().expect("a problem is JSON");
        assert_eq!(body.status, 404, "{path}: {body:?}");
        assert_eq!(body.title, "not found", "{path}: {body:?}");
        assert!(!body.detail.is_empty(), "{path}: {body:?}");
    }
    d.terminate();
}

const EXTRA: &str = "id: extra\nsteps:\n  - end: done\n";

#[test]
fn a_reload_with_any_error_is_refused_whole() {
    let wf = workflows_with("hup", HUP_V1);
    let mut d = Daemon::start(Backend::Sqlite, wf.path());
    let v1 = version(&d);
    // One file breaks while another is added: neither change is taken.
    std::fs::write(d.workflows_dir().join("hup.yaml"), HUP_BROKEN).expect("breaking the file");
    std::fs::write(d.workflows_dir().join("extra.yaml"), EXTRA).expect("adding a file");
    d.signal("HUP");
    d.wait_until("the reload is refused", Duration::from_secs(30), |d| {
        d.logs().contains("reload refused: 1 error(s)")
    });
    assert_eq!(version(&d), v1);
    let (status, _) = d.try_get("/v1/workflows/extra").expect("GET");
    assert_eq!(status, 404, "a refused reload adds nothing");
    // Fixed, the next reload takes both.
    std::fs::write(d.workflows_dir().join("hup.yaml"), HUP_V2).expect("fixing the file");
    d.signal("HUP");
    d.wait_until("the fixed reload is taken", Duration::from_secs(30), |d| {
        d.try_get("/v1/workflows/extra")
            .is_ok_and(|(s, _)| s == 200)
    });
    assert_ne!(version(&d), v1);
    d.terminate();
}
