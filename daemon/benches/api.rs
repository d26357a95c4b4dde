//! API benchmark: authenticated requests per second and their latency against the real
//! `clearflow serve` on SQLite over loopback. Prints figures; asserts nothing.
//!
//! ```text
//! cargo bench -p clearflow --bench api -- [--seconds N] [--connections N] [--tasks N]
//!                                         [--durability normal|full] [--pool N]
//!                                         [--page N] [--history N]
//!                                         [--only healthz,tasks,show,start,inbox,case,status]
//! ```
//!
//! The bench writes a configuration in a temporary folder (SQLite store, maildir
//! transport, system clock, log level `warn`), starts the `clearflow` binary Cargo built
//! for it (`serve`), creates one token per user with `clearflow tokens create`, starts
//! `--tasks` instances (200) of a workflow whose first step is a task for role `clerk`,
//! and waits until the worker has opened every task. Then, from this process, a tokio
//! runtime with two worker threads drives each scenario over `--connections` (32)
//! keep-alive HTTP/1.1 connections (reqwest), each connection sending its next request
//! as soon as the previous answer is read, for one second of warm-up and `--seconds` (10)
//! measured:
//!
//! - **healthz**: `GET /healthz`, no token and no database: the HTTP stack's ceiling.
//! - **tasks**: `GET /v1/tasks?limit=N` as `clerk` (role with `tasks = true`): one page
//!   of the open tasks of the caller's roles, `--page` (50, the API's default) of them.
//! - **show**: `GET /v1/instances/{id}` as `reader` (`read_instances`): one instance with
//!   its history, pending events and children.
//! - **start**: `POST /v1/instances` as `starter`: a new instance of a two-step workflow
//!   (a `set`, then a wait for an event) with a distinct input each time; the engine
//!   worker runs the new instances in the same daemon meanwhile.
//! - **inbox**: `GET /inbox` (the console's HTML inbox, first page of 50 sorted by due
//!   date with "due in N working days") as `clerk`, signed in with a session cookie
//!   (made through `[web.proxy_auth]` from loopback): every open task is the clerk's
//!   role's, so `--tasks 10000` is an inbox over 10,000 open tasks.
//! - **case**: `GET /cases/{id}` as `clerk`: the case page (SVG diagram, timeline, open
//!   tasks, timers, links, mails) of an instance whose loop left `--history` (500)
//!   history rows.
//! - **status**: `POST /follow` with a receipt code: the whistleblower's status page,
//!   bound by the Argon2id check of the code (the bench lifts the rate limits, which by
//!   default allow 10 checks a minute per address and 20 an hour per code).
//!
//! Every request is authenticated (a token lookup in the store per request). The
//! figures are requests/s, p50/p99/max latency, the count of non-2xx answers and
//! transport errors, and the CPU each process used (from `/proc`, in cores): the load
//! generator shares the machine's cores with the daemon, so on a small machine the
//! figures are the sum of both's costs, not the daemon's ceiling.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The daemon binary Cargo built for this bench (the bench profile: optimised).
const BIN: &str = env!("CARGO_BIN_EXE_clearflow");

/// Opens one task for role `clerk` per instance.
const TASK_WORKFLOW: &str = r#"
id: bench-task
title: one task for the clerks
roles: [clerk]
steps:
  - id: handle
    task: { role: clerk, title: "handle ${ input.n }", notify_assigned: false }
  - end: done
"#;

/// A case with a long history: a loop of `set` steps, then a task for the clerks.
const CASE_WORKFLOW: &str = r#"
id: bench-case
title: a long history, then a task
roles: [clerk]
steps:
  - id: init
    set: { i: 0 }
  - id: again
    set: { i: "${ vars.i + 1 }" }
  - id: loop
    switch:
      - when: vars.i < input.rounds
        goto: again
  - id: look
    task: { role: clerk, title: "look at the history", notify_assigned: false }
  - end: done
"#;

/// The intake workflow of the status scenario.
const INTAKE_WORKFLOW: &str = r#"
id: bench-intake
title: a complaint
input:
  type: object
  properties:
    case_number: { type: string }
    content: { type: string }
steps:
  - id: received
    set: { public_status: received }
  - id: parked
    wait: { event: go }
  - end: done
"#;

/// Started by the start scenario: one step, then a wait that parks the instance.
const START_WORKFLOW: &str = r#"
id: bench-start
title: a set step, then a wait for an event
steps:
  - id: note
    set: { n: "${ input.n }" }
  - id: parked
    wait: { event: go }
  - end: done
"#;

struct Args {
    seconds: u64,
    connections: usize,
    tasks: usize,
    durability: String,
    pool: u32,
    only: Option<Vec<String>>,
    page: u32,
    history: usize,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10,
        connections: 32,
        tasks: 200,
        durability: "normal".into(),
        pool: 4,
        only: None,
        page: 50,
        history: 500,
    };
    let all: Vec<String> = std::env::args().skip(1).collect();
    let mut it = all.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> String {
            it.next()
                .cloned()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        let num = |name: &str, v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} needs a number, not `{v}`"))
        };
        match arg.as_str() {
            "--seconds" => a.seconds = num(arg, value(arg)).max(1),
            "--connections" => a.connections = num(arg, value(arg)).max(1) as usize,
            "--tasks" => a.tasks = num(arg, value(arg)).max(1) as usize,
            "--page" => a.page = num(arg, value(arg)).clamp(1, 1000) as u32,
            "--pool" => a.pool = num(arg, value(arg)).max(1) as u32,
            "--history" => a.history = num(arg, value(arg)).max(1) as usize,
            "--durability" => a.durability = value(arg),
            "--only" => a.only = Some(value(arg).split(',').map(str::to_owned).collect()),
            // cargo bench passes `--bench`.
            _ => {}
        }
    }
    a
}

/// The daemon under test, killed when dropped.
struct Daemon {
    child: Child,
    url: String,
    config: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(dir: &Path, a: &Args) -> Daemon {
        let wf = dir.join("workflows");
        std::fs::create_dir_all(&wf).expect("workflows folder");
        std::fs::create_dir_all(dir.join("store")).expect("store folder");
        std::fs::write(wf.join("bench-task.yaml"), TASK_WORKFLOW).expect("workflow");
        std::fs::write(wf.join("bench-start.yaml"), START_WORKFLOW).expect("workflow");
        std::fs::write(wf.join("bench-case.yaml"), CASE_WORKFLOW).expect("workflow");
        std::fs::write(wf.join("bench-intake.yaml"), INTAKE_WORKFLOW).expect("workflow");
        let users = dir.join("users.toml");
        let mut text = String::new();
        for (id, role) in [
            ("clerk", "clerk"),
            ("reader", "reader"),
            ("starter", "starter"),
        ] {
            text.push_str(&format!(
                "[[users]]\nid = \"{id}\"\nname = \"{id}\"\nemail = \"{id}@example.org\"\nroles = [\"{role}\"]\n\n"
            ));
        }
        std::fs::write(&users, text).expect("users file");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.join("clearflow.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
                 [store]\nurl = \"sqlite://{db}\"\ndurability = \"{durability}\"\nmax_connections = {pool}\n\n\
                 [workflows]\ndir = \"{wf}\"\n\n[log]\nlevel = \"warn\"\n\n\
                 [directory]\nusers = \"{users}\"\n\n\
                 [mail.transport]\nkind = \"maildir\"\npath = \"{maildir}\"\n\n\
                 [roles.clerk]\ntasks = true\n\n[roles.reader]\nread_instances = true\n\n\
                 [roles.starter]\nstart = [\"*\"]\n\n\
                 [intake]\nworkflow = \"bench-intake\"\nstatus_per_minute = 1000000\nstatus_burst = 1000000\n\
                 receipt_per_hour = 1000000000\nreceipt_burst = 1000000\nintake_per_hour = 1000000\nintake_burst = 1000\n\n\
                 [web.proxy_auth]\nheader = \"X-Remote-User\"\ntrusted = [\"127.0.0.1\"]\n",
                db = dir.join("store/bench.db").display(),
                durability = a.durability,
                pool = a.pool,
                wf = wf.display(),
                users = users.display(),
                maildir = dir.join("maildir").display(),
            ),
        )
        .expect("config");
        let log = dir.join("daemon.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            // 32 bytes, base64: the key intake seals identities and receipt codes with.
            .env(
                "CLEARFLOW_IDENTITY_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawning clearflow serve");
        Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
            config,
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn token(&self, user: &str) -> String {
        let out = Command::new(BIN)
            .args(["tokens", "create", "--user", user, "--expires", "never"])
            .arg("--config")
            .arg(&self.config)
            .env_remove("CLEARFLOW_TOKEN")
            .output()
            .expect("clearflow tokens create");
        assert!(
            out.status.success(),
            "tokens create --user {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }
}

/// User and system CPU seconds of a process so far (`/proc/PID/stat`), if readable.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

/// One request of a scenario: method, path, bearer token, body.
#[derive(Clone)]
struct Scenario {
    name: &'static str,
    what: String,
    method: reqwest::Method,
    path: String,
    token: Option<String>,
    /// More headers (a session cookie).
    headers: Vec<(&'static str, String)>,
    body: Body,
}

/// What a scenario's request carries.
#[derive(Clone)]
enum Body {
    None,
    /// A JSON body made from the request's sequence number.
    Json(fn(u64) -> Value),
    /// A fixed urlencoded form.
    Form(String),
}

struct Outcome {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    transport_errors: u64,
    first_failure: Option<String>,
}

async fn drive(
    client: &reqwest::Client,
    base: &str,
    s: &Scenario,
    connections: usize,
    warmup: Duration,
    measured: Duration,
) -> (Outcome, Duration) {
    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let record_from = started + warmup;
    let until = record_from + measured;
    let mut handles = Vec::new();
    for _ in 0..connections {
        let client = client.clone();
        let url = format!("{base}{}", s.path);
        let s = s.clone();
        let seq = seq.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Outcome {
                latencies_us: Vec::with_capacity(1 << 16),
                non_2xx: 0,
                transport_errors: 0,
                first_failure: None,
            };
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                let mut req = client.request(s.method.clone(), &url);
                if let Some(t) = &s.token {
                    req = req.bearer_auth(t);
                }
                for (k, v) in &s.headers {
                    req = req.header(*k, v);
                }
                match &s.body {
                    Body::None => {}
                    Body::Json(body) => req = req.json(&body(seq.fetch_add(1, Relaxed))),
                    Body::Form(f) => {
                        req = req
                            .header("content-type", "application/x-www-form-urlencoded")
                            .body(f.clone());
                    }
                }
                let result = match req.send().await {
                    Ok(r) => {
                        let status = r.status();
                        match r.bytes().await {
                            Ok(_) if status.is_success() => Ok(()),
                            Ok(b) => {
                                Err((false, format!("{status}: {}", String::from_utf8_lossy(&b))))
                            }
                            Err(e) => Err((true, e.to_string())),
                        }
                    }
                    Err(e) => Err((true, e.to_string())),
                };
                let t1 = Instant::now();
                if t0 < record_from {
                    continue;
                }
                match result {
                    Ok(()) => {
                        out.latencies_us
                            .push(u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX));
                    }
                    Err((transport, why)) => {
                        if transport {
                            out.transport_errors += 1;
                        } else {
                            out.non_2xx += 1;
                        }
                        out.first_failure.get_or_insert(why);
                    }
                }
            }
            out
        }));
    }
    let mut all = Outcome {
        latencies_us: Vec::new(),
        non_2xx: 0,
        transport_errors: 0,
        first_failure: None,
    };
    for h in handles {
        let o = h.await.expect("a load task");
        all.latencies_us.extend(o.latencies_us);
        all.non_2xx += o.non_2xx;
        all.transport_errors += o.transport_errors;
        if all.first_failure.is_none() {
            all.first_failure = o.first_failure;
        }
    }
    // Requests still in flight at `until` finish after it; count the real span.
    let span = started.elapsed().saturating_sub(warmup);
    (all, span)
}

/// Whether a shown instance waits at a task step.
fn waits_for_a_task(shown: &Value) -> bool {
    shown["waiting"]
        .as_object()
        .is_some_and(|w| w.values().any(|t| t["wait"]["for"] == "task"))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let a = args();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "clearflow API benchmark: {cores} cores shared by the daemon and this load generator \
         (2 tokio worker threads), {} keep-alive connections, {} s per scenario after 1 s of \
         warm-up; SQLite (durability {}, pool {}; the daemon caps it at 4), log level warn",
        a.connections, a.seconds, a.durability, a.pool
    );
    let dir = tempfile::Builder::new()
        .prefix("clearflow-bench-api")
        .tempdir()
        .expect("temporary folder");
    let daemon = Daemon::start(dir.path(), &a);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let base = daemon.url.clone();

    // Ready?
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not become ready:\n{}",
                daemon.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let clerk = daemon.token("clerk");
    let reader = daemon.token("reader");
    let starter = daemon.token("starter");

    // Seed: instances whose open tasks the clerk lists.
    let seeded: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for n in 0..a.tasks {
            let r = client
                .post(format!("{base}/v1/instances"))
                .bearer_auth(&starter)
                .json(&json!({ "workflow": "bench-task", "input": { "n": n } }))
                .send()
                .await
                .expect("start");
            assert!(r.status().is_success(), "start: {}", r.status());
            let v: Value = r.json().await.expect("json");
            ids.push(v["id"].as_str().expect("id").to_owned());
        }
        loop {
            let v: Value = client
                .get(format!("{base}/v1/tasks?limit=1000"))
                .bearer_auth(&clerk)
                .send()
                .await
                .expect("tasks")
                .json()
                .await
                .expect("json");
            let open = v["items"].as_array().map_or(0, Vec::len);
            if open >= a.tasks.min(1000) {
                break;
            }
            assert!(
                Instant::now() < deadline + Duration::from_secs(60),
                "only {open} tasks opened:\n{}",
                daemon.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ids
    });
    let page = rt.block_on(async {
        let v: Value = client
            .get(format!("{base}/v1/tasks?limit={}", a.page))
            .bearer_auth(&clerk)
            .send()
            .await
            .expect("tasks")
            .json()
            .await
            .expect("json");
        v["items"].as_array().map_or(0, Vec::len)
    });
    let shown = seeded[seeded.len() / 2].clone();
    let history_rows = rt.block_on(async {
        let v: Value = client
            .get(format!("{base}/v1/instances/{shown}"))
            .bearer_auth(&reader)
            .send()
            .await
            .expect("show")
            .json()
            .await
            .expect("json");
        v["history"].as_array().map_or(0, Vec::len)
    });
    // The case with a long history, a session for the console, a filed complaint.
    let (case, case_rows, session, receipt, open_tasks) = rt.block_on(async {
        // Every seeded task open: the engine runs instances oldest first, so the last.
        let last = seeded.last().expect("seeded").clone();
        loop {
            let v: Value = client
                .get(format!("{base}/v1/instances/{last}"))
                .bearer_auth(&reader)
                .send()
                .await
                .expect("show")
                .json()
                .await
                .expect("json");
            if waits_for_a_task(&v) {
                break;
            }
            assert!(
                Instant::now() < deadline + Duration::from_secs(600),
                "the last seeded instance has no task: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Each loop round writes two history rows (its two steps).
        let rounds = (a.history / 2).max(1);
        let v: Value = client
            .post(format!("{base}/v1/instances"))
            .bearer_auth(&starter)
            .json(&json!({ "workflow": "bench-case", "input": { "rounds": rounds } }))
            .send()
            .await
            .expect("start the case")
            .json()
            .await
            .expect("json");
        let case = v["id"].as_str().expect("id").to_owned();
        let rows = loop {
            let v: Value = client
                .get(format!("{base}/v1/instances/{case}"))
                .bearer_auth(&reader)
                .send()
                .await
                .expect("show")
                .json()
                .await
                .expect("json");
            if waits_for_a_task(&v) {
                break v["history"].as_array().map_or(0, Vec::len);
            }
            assert!(
                Instant::now() < deadline + Duration::from_secs(120),
                "the case did not reach its task: {v}\n{}",
                daemon.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let signed_in = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .get(format!("{base}/sign-in"))
            .header("X-Remote-User", "clerk")
            .send()
            .await
            .expect("sign in");
        let session = signed_in
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let filed: Value = client
            .post(format!("{base}/v1/public/intake"))
            .json(&json!({ "case": { "content": "bench" } }))
            .send()
            .await
            .expect("intake")
            .json()
            .await
            .expect("json");
        let receipt = filed["receipt"]
            .as_str()
            .unwrap_or_else(|| panic!("no receipt: {filed}"))
            .to_owned();
        (case, rows, session, receipt, a.tasks + 1)
    });
    println!(
        "seeded {} instances with an open task each; a task page holds {page} tasks, the \
         shown instance {history_rows} history rows, the case page's instance {case_rows}\n",
        seeded.len()
    );

    let scenarios = [
        Scenario {
            name: "healthz",
            what: "GET /healthz (no token, no store)".into(),
            method: reqwest::Method::GET,
            path: "/healthz".into(),
            token: None,
            headers: vec![],
            body: Body::None,
        },
        Scenario {
            name: "tasks",
            what: format!(
                "GET /v1/tasks?limit={} as a task role ({page} tasks)",
                a.page
            ),
            method: reqwest::Method::GET,
            path: format!("/v1/tasks?limit={}", a.page),
            token: Some(clerk),
            headers: vec![],
            body: Body::None,
        },
        Scenario {
            name: "show",
            what: "GET /v1/instances/{id} as a reader".into(),
            method: reqwest::Method::GET,
            path: format!("/v1/instances/{shown}"),
            token: Some(reader),
            headers: vec![],
            body: Body::None,
        },
        Scenario {
            name: "start",
            what: "POST /v1/instances (start) as a starter".into(),
            method: reqwest::Method::POST,
            path: "/v1/instances".into(),
            token: Some(starter.clone()),
            headers: vec![],
            body: Body::Json(|n| json!({ "workflow": "bench-start", "input": { "n": n } })),
        },
        Scenario {
            name: "inbox",
            what: format!("GET /inbox, signed in ({open_tasks} open tasks of the role)"),
            method: reqwest::Method::GET,
            path: "/inbox".into(),
            token: None,
            headers: vec![("cookie", session.clone())],
            body: Body::None,
        },
        Scenario {
            name: "case",
            what: format!("GET /cases/{{id}}, signed in ({case_rows} history rows)"),
            method: reqwest::Method::GET,
            path: format!("/cases/{case}"),
            token: None,
            headers: vec![("cookie", session.clone())],
            body: Body::None,
        },
        Scenario {
            name: "status",
            what: "POST /follow with a receipt code (Argon2id; limits lifted)".into(),
            method: reqwest::Method::POST,
            path: "/follow".into(),
            token: None,
            headers: vec![],
            body: Body::Form(format!("receipt={receipt}")),
        },
    ];
    let daemon_pid = daemon.child.id();
    let me = std::process::id();
    println!("daemon pid {daemon_pid}, load generator pid {me}");
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>7}  scenario",
        "", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "daemon", "loadgen"
    );
    for s in scenarios.iter().filter(|s| {
        a.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == s.name))
    }) {
        let d0 = cpu_seconds(daemon_pid);
        let m0 = cpu_seconds(me);
        let (mut o, span) = rt.block_on(drive(
            &client,
            &base,
            s,
            a.connections,
            Duration::from_secs(1),
            Duration::from_secs(a.seconds),
        ));
        let secs = span.as_secs_f64();
        // The CPU figures include the warm-up second; scaled to the whole run.
        let whole = secs + 1.0;
        let cores_of = |before: Option<f64>, pid: u32| match (before, cpu_seconds(pid)) {
            (Some(b), Some(a)) => format!("{:.2}", (a - b) / whole),
            _ => "?".into(),
        };
        o.latencies_us.sort_unstable();
        let ok = o.latencies_us.len();
        println!(
            "{:<8} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>7} {:>7}  {}",
            s.name,
            ok as f64 / secs,
            percentile(&o.latencies_us, 0.50),
            percentile(&o.latencies_us, 0.99),
            percentile(&o.latencies_us, 1.0),
            o.non_2xx + o.transport_errors,
            cores_of(d0, daemon_pid),
            cores_of(m0, me),
            s.what,
        );
        if let Some(f) = &o.first_failure {
            let f: String = f.chars().take(300).collect();
            println!(
                "         {} non-2xx, {} transport errors; first: {f}",
                o.non_2xx, o.transport_errors
            );
        }
    }
    println!(
        "\nreq/s counts 2xx answers only; `daemon` and `loadgen` are the cores each process \
         used (CPU seconds per second), out of {cores}"
    );
    let errors = daemon
        .logs()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .count();
    if errors > 0 {
        println!("the daemon logged {errors} errors; see its log:");
        for l in daemon
            .logs()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .take(5)
        {
            println!("  {l}");
        }
    }
}
