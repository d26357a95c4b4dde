//! Authentication, authorisation and audit with the real daemon on SQLite and PostgreSQL:
//! the permission matrix (every role against every endpoint, the task, intake and
//! identity routes included), refused tokens (missing,
//! malformed, wrong, expired, revoked, of a user no longer in the users file), the
//! `tokens` commands, the CLI's credentials, and tamper detection by `audit verify`.

use clearflow_testkit as support;

use std::path::Path;
use std::process::{Command, Output};

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{BIN, Backend, Daemon, Options, fixtures};

/// The test users: id and roles. `admin` (roles `admin` and `operator`) comes from the harness.
const USERS: &[(&str, &[&str])] = &[
    ("clerk", &["intake"]),
    ("reader", &["reader"]),
    ("officer", &["identity-officer"]),
    ("ops", &["admin"]),
    ("visitor", &["unconfigured"]),
    ("porter", &["porter"]),
];

/// What the test roles permit (beside the harness's `admin` and `operator`).
const ROLES: &str = "[roles.intake]\nstart = [\"timers\"]\ntasks = true\n\n\
                     [roles.reader]\nread_instances = true\n\n\
                     [roles.identity-officer]\nread_identity = true\n\n\
                     [roles.porter]\ntasks = true\n";

/// Everyone, including the harness's `admin`.
const ALL: &[&str] = &[
    "admin", "clerk", "reader", "officer", "ops", "visitor", "porter",
];
/// Holders of the `admin` permission.
const ADMINS: &[&str] = &["admin", "ops"];
/// Holders of `read_instances`.
const READERS: &[&str] = &["admin", "reader"];
/// Who may list tasks and show them: `act_on_tasks` or `read_instances`.
const TASK_LOOKERS: &[&str] = &["admin", "clerk", "reader", "porter"];
/// Who may act on a task of candidate group `intake`: `act_on_tasks` and the role.
/// `admin` (operator) has `act_on_tasks` but not the role: the handler's 403. `porter`
/// has `act_on_tasks` and another role: the task is hidden from them, a 404.
const INTAKE_ACTORS: &[&str] = &["clerk"];
/// Holders of `read_identity`.
const IDENTITY_READERS: &[&str] = &["officer"];

/// The workflow of the task rows: one task for role `intake`, whose rejection goes back.
const MATRIX_TASK: &str = "id: matrix-task\nroles: [intake]\nsteps:\n  - id: prepare\n    set: { ready: true }\n  \
- id: handle\n    task: { role: intake, title: handle, notify_assigned: false, on_reject: prepare }\n  \
- end: handled\n";
/// The intake workflow: the public status, then a wait.
const MATRIX_INTAKE: &str = "id: matrix-intake\nsteps:\n  - id: receive\n    set: { public_status: received }\n  \
- id: screened\n    wait: { event: screened }\n  - end: concluded\n";

/// One endpoint of the matrix: method, path, body, and the users allowed to call it.
/// Placeholders in the path and body: `{id}` a running instance, `{task}` an open task
/// of role `intake` (claimed and given back by the rows), `{task2}` and `{task3}` two
/// more (completed and rejected by the rows), `{intake}` an instance filed through
/// intake with a reporter's identity, `{receipt}` its receipt code.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [&'static str],
    /// The status every allowed call gets, when it is always the same.
    ok: Option<u16>,
    /// Users the handler answers 404 (not 403): the resource is hidden from them.
    hidden: &'static [&'static str],
    /// Served without a token: no token and a bad token change nothing.
    public: bool,
}

impl Endpoint {
    fn ok(mut self, status: u16) -> Endpoint {
        self.ok = Some(status);
        self
    }
    fn hidden(mut self, users: &'static [&'static str]) -> Endpoint {
        self.hidden = users;
        self
    }
    fn public(mut self) -> Endpoint {
        self.public = true;
        self
    }
}

fn endpoints() -> Vec<Endpoint> {
    let e = |method, path, body: Option<Value>, allowed| Endpoint {
        method,
        path,
        body,
        allowed,
        ok: None,
        hidden: &[],
        public: false,
    };
    vec![
        e("GET", "/v1/workflows", None, ALL),
        e("GET", "/v1/workflows/timers", None, ALL),
        e("GET", "/v1/workflows/timers/graph", None, ALL),
        e("GET", "/v1/workflows/nope", None, ALL),
        // The API's own description: any authenticated caller.
        e("GET", "/v1/openapi.json", None, ALL),
        // Validation parses a text and touches nothing: any authenticated user.
        e(
            "POST",
            "/v1/workflows/validate",
            Some(json!("id: x\nsteps: []\n")),
            ALL,
        ),
        // `clerk` may start `timers` only; `admin` (operator) any workflow.
        e(
            "POST",
            "/v1/instances",
            Some(json!({"workflow": "timers"})),
            &["admin", "clerk"],
        ),
        e(
            "POST",
            "/v1/instances",
            Some(json!({"workflow": "cs-parent", "input": {"who": "m"}})),
            &["admin"],
        ),
        e(
            "POST",
            "/v1/instances",
            Some(json!({"workflow": "no-such-workflow"})),
            &["admin"],
        ),
        e("GET", "/v1/instances", None, READERS),
        e("GET", "/v1/instances?status=running&limit=5", None, READERS),
        e("GET", "/v1/instances/{id}", None, READERS),
        e(
            "GET",
            "/v1/instances/00000000-0000-0000-0000-000000000000",
            None,
            READERS,
        ),
        e(
            "POST",
            "/v1/instances/{id}/signal",
            Some(json!({"name": "poke"})),
            ADMINS,
        ),
        e(
            "POST",
            "/v1/instances/00000000-0000-0000-0000-000000000000/cancel",
            Some(json!({})),
            ADMINS,
        ),
        e(
            "POST",
            "/v1/events",
            Some(json!({"name": "poke", "key": "k"})),
            ADMINS,
        ),
        e("GET", "/v1/mail", None, ADMINS),
        e(
            "POST",
            "/v1/mail/00000000-0000-0000-0000-000000000000/retry",
            Some(json!({})),
            ADMINS,
        ),
        e("GET", "/v1/admin/clock", None, ADMINS),
        e(
            "POST",
            "/v1/admin/clock",
            Some(json!({"advance_ms": 0})),
            ADMINS,
        ),
        e("GET", "/metrics", None, ADMINS),
        e("GET", "/v1/audit", None, ADMINS),
        e("GET", "/v1/schedules", None, ADMINS),
        e(
            "POST",
            "/v1/schedules/timers/none/pause",
            Some(json!({})),
            ADMINS,
        ),
        e(
            "POST",
            "/v1/schedules/timers/none/resume",
            Some(json!({})),
            ADMINS,
        ),
        e("GET", "/v1/schedules/timers/none/fires", None, ADMINS),
        // Tasks: looking needs `act_on_tasks` or `read_instances`; acting needs
        // `act_on_tasks` and the task's role (or assignment).
        e("GET", "/v1/tasks", None, TASK_LOOKERS).ok(200),
        e(
            "GET",
            "/v1/tasks?mine=true&status=any&limit=5",
            None,
            TASK_LOOKERS,
        )
        .ok(200),
        e(
            "GET",
            "/v1/tasks/{task}",
            None,
            &["admin", "clerk", "reader"],
        )
        .ok(200)
        .hidden(&["porter"]),
        e(
            "GET",
            "/v1/tasks/00000000-0000-0000-0000-000000000000",
            None,
            TASK_LOOKERS,
        )
        .ok(404),
        e(
            "POST",
            "/v1/tasks/{task}/claim",
            Some(json!({})),
            INTAKE_ACTORS,
        )
        .ok(200)
        .hidden(&["porter"]),
        e(
            "POST",
            "/v1/tasks/{task}/unclaim",
            Some(json!({})),
            INTAKE_ACTORS,
        )
        .ok(200)
        .hidden(&["porter"]),
        e(
            "POST",
            "/v1/tasks/{task2}/complete",
            Some(json!({"form": {"done": true}})),
            INTAKE_ACTORS,
        )
        .ok(202)
        .hidden(&["porter"]),
        e(
            "POST",
            "/v1/tasks/{task3}/reject",
            Some(json!({"reason": "incomplete"})),
            INTAKE_ACTORS,
        )
        .ok(202)
        .hidden(&["porter"]),
        // Intake and status are public; reading an identity needs `read_identity`.
        e(
            "POST",
            "/v1/public/intake",
            Some(json!({"case": {"summary": "matrix"}, "reporter": {"name": "Matrix Reporter"}})),
            ALL,
        )
        .ok(201)
        .public(),
        e(
            "POST",
            "/v1/public/status",
            Some(json!({"receipt": "{receipt}"})),
            ALL,
        )
        .ok(200)
        .public(),
        e(
            "POST",
            "/v1/public/status",
            Some(json!({"receipt": "AAAA-BBBB-CCCC-DDDD"})),
            ALL,
        )
        .ok(404)
        .public(),
        e(
            "GET",
            "/v1/instances/{intake}/identity?reason=matrix%20check",
            None,
            IDENTITY_READERS,
        )
        .ok(200),
        e(
            "GET",
            "/v1/instances/{intake}/identity",
            None,
            IDENTITY_READERS,
        )
        .ok(400),
        e(
            "GET",
            "/v1/instances/{id}/identity?reason=matrix",
            None,
            IDENTITY_READERS,
        )
        .ok(404),
    ]
}

/// The test workflows, the task and intake workflows of the matrix added.
fn matrix_workflows(into: &Path) {
    support::copy_workflows(&fixtures(), into);
    std::fs::write(into.join("matrix-task.yaml"), MATRIX_TASK).expect("workflow");
    std::fs::write(into.join("matrix-intake.yaml"), MATRIX_INTAKE).expect("workflow");
}

/// [`options`] with intake on (`matrix-intake`, generous rate limits) and an identity
/// key from `clearflow identity keygen` in the environment.
fn matrix_options(keys: &Path) -> Options {
    let key = keys.join("identity.key");
    let out = Command::new(&*BIN)
        .args(["identity", "keygen"])
        .arg(&key)
        .output()
        .expect("keygen");
    assert!(out.status.success(), "{}", text(&out));
    let key = std::fs::read_to_string(&key).expect("key");
    Options {
        env: vec![("CLEARFLOW_IDENTITY_KEY".into(), key.trim().into())],
        extra: "[intake]\nworkflow = \"matrix-intake\"\nintake_burst = 100\n\
                status_burst = 100\nreceipt_burst = 100\n"
            .into(),
        ..options()
    }
}

fn options() -> Options {
    let users = USERS
        .iter()
        .map(|(id, roles)| {
            format!(
                "[[users]]\nid = \"{id}\"\nname = \"{id}\"\nemail = \"{id}@example.org\"\nroles = {roles:?}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Options {
        users,
        roles: ROLES.into(),
        ..Options::default()
    }
}

fn call(
    d: &Daemon,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let r = match (method, body) {
        ("GET", _) => d.try_get_as(token, path),
        ("POST", Some(Value::String(text))) => {
            // A raw text body (workflow validation).
            let mut req = reqwest::blocking::Client::new()
                .post(format!("{}{path}", d.url()))
                .body(text.clone());
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().expect("POST");
            let status = r.status().as_u16();
            let text = r.text().unwrap_or_default();
            return (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            );
        }
        ("POST", b) => d.try_post_as(token, path, b.unwrap_or(&json!({}))),
        _ => unreachable!("method {method}"),
    };
    r.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A refusal is problem+json with the given status and says nothing internal.
fn assert_problem(status: u16, v: &Value, expected: u16, what: &str) {
    assert_eq!(status, expected, "{what}: {v}");
    assert_eq!(v["status"], expected, "{what}: {v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    for leak in [
        "sqlx", "database", "SELECT", "token_id", "secret", "hash", "panicked",
    ] {
        assert!(
            !detail.contains(leak),
            "{what}: the problem leaks `{leak}`: {v}"
        );
    }
}

/// The open task of `instance` (as the harness's admin, a reader of instances).
fn task_of(d: &mut Daemon, instance: &str) -> String {
    d.settle();
    let v = d.get(&format!("/v1/tasks?instance={instance}"));
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{v}");
    items[0]["id"].as_str().expect("id").to_owned()
}

fn permission_matrix(backend: Backend) {
    let keys = tempfile::tempdir().expect("tempdir");
    let workflows = tempfile::tempdir().expect("tempdir");
    matrix_workflows(workflows.path());
    let mut d = Daemon::start_with(backend, workflows.path(), matrix_options(keys.path()));
    let tokens: Vec<(&str, String)> = ALL
        .iter()
        .map(|u| {
            (
                *u,
                if *u == "admin" {
                    d.token.clone().expect("token")
                } else {
                    d.create_token(u, "30d")
                },
            )
        })
        .collect();
    let (running, _) = d.start_instance("timers", &json!({}), None);
    let tasks: Vec<String> = (0..3)
        .map(|_| {
            let (id, _) = d.start_instance("matrix-task", &json!({}), None);
            task_of(&mut d, &id)
        })
        .collect();
    let (status, filed) = d
        .try_post(
            "/v1/public/intake",
            &json!({"case": {"summary": "first"}, "reporter": {"name": "Matrix Reporter"}}),
        )
        .expect("intake");
    assert_eq!(status, 201, "{filed}");
    let receipt = filed["receipt"].as_str().expect("receipt").to_owned();
    let intake = d.list_all("workflow=matrix-intake");
    assert_eq!(intake.len(), 1, "{intake:?}");
    let intake = intake[0]["id"].as_str().expect("id").to_owned();
    let fill = |text: &str| {
        text.replace("{id}", &running)
            .replace("{task}", &tasks[0])
            .replace("{task2}", &tasks[1])
            .replace("{task3}", &tasks[2])
            .replace("{intake}", &intake)
            .replace("{receipt}", &receipt)
    };
    let mut checked = 0;
    for ep in endpoints() {
        let path = fill(ep.path);
        let body = ep
            .body
            .as_ref()
            .map(|b| serde_json::from_str::<Value>(&fill(&b.to_string())).expect("json"));
        let what = format!("{} {path}", ep.method);
        let allowed = |user: &str, status: u16, v: &Value| {
            assert!(
                status != 401 && status != 403 && status < 500,
                "{what} as {user}: expected allowed, got {status} {v}"
            );
            if let Some(ok) = ep.ok {
                assert_eq!(status, ok, "{what} as {user}: {v}");
            }
        };
        // Without a token, with a malformed one, with an unknown one: 401, for everyone
        // (a public path answers them as it answers anyone).
        for token in [
            None,
            Some("not-a-token"),
            Some(
                "cf_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ] {
            let (status, v) = call(&d, token, ep.method, &path, body.as_ref());
            if ep.public {
                allowed(&format!("{token:?}"), status, &v);
            } else {
                assert_problem(status, &v, 401, &format!("{what} with {token:?}"));
            }
        }
        for (user, token) in &tokens {
            let (status, v) = call(&d, Some(token), ep.method, &path, body.as_ref());
            if ep.allowed.contains(user) {
                allowed(user, status, &v);
            } else if ep.hidden.contains(user) {
                assert_problem(status, &v, 404, &format!("{what} as {user}"));
            } else {
                assert_problem(status, &v, 403, &format!("{what} as {user}"));
                assert_eq!(v["title"], "forbidden", "{what} as {user}: {v}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 250, "{checked} cells");
    // Refusals and the first use of every token are in the audit log.
    let log = d.get("/v1/audit?limit=1000");
    let items = log["items"].as_array().expect("items");
    let count = |kind: &str| items.iter().filter(|i| i["kind"] == kind).count();
    assert_eq!(count("token.created"), ALL.len(), "{log}");
    assert_eq!(
        count("token.used"),
        ALL.len(),
        "once per token per day: {log}"
    );
    let guarded = endpoints().iter().filter(|e| !e.public).count();
    assert!(count("auth.refused") >= 3 * guarded, "{log}");
    let forbidden = |actor: &str, path: &str| {
        items.iter().any(|i| {
            i["kind"] == "auth.forbidden" && i["actor"] == actor && i["detail"]["path"] == path
        })
    };
    assert!(forbidden("visitor", "/v1/instances"), "{log}");
    // Refusals by the permission check and by the task handler's role check alike.
    assert!(forbidden("officer", "/v1/tasks"), "{log}");
    assert!(
        forbidden("reader", &format!("/v1/tasks/{}/claim", tasks[0])),
        "{log}"
    );
    assert!(
        forbidden("admin", &format!("/v1/tasks/{}/complete", tasks[1])),
        "{log}"
    );
    assert!(
        forbidden("ops", &format!("/v1/instances/{intake}/identity")),
        "{log}"
    );
    // Public paths take no token, so nothing about them is refused or audited as a use.
    assert!(
        !items.iter().any(|i| i["detail"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/v1/public/"))),
        "{log}"
    );
    // Every identity read is in the audit log with who and why.
    assert!(
        items.iter().any(|i| i["kind"] == "identity.read"
            && i["actor"] == "officer"
            && i["detail"]["reason"] == "matrix check"),
        "{log}"
    );
    // The task rows did what they say.
    let shown = |t: &str| d.get(&format!("/v1/tasks/{t}"));
    let t = shown(&tasks[0]);
    assert!(t["status"] == "open" && t["claimed_by"].is_null(), "{t}");
    let t = shown(&tasks[1]);
    assert!(
        t["status"] == "completed" && t["closed_by"] == "clerk",
        "{t}"
    );
    let t = shown(&tasks[2]);
    assert!(
        t["status"] == "rejected" && t["closed_by"] == "clerk",
        "{t}"
    );
    // History records who acted.
    let shown = d.instance(&running);
    assert!(
        shown["history"]
            .as_array()
            .expect("history")
            .iter()
            .any(|h| h["actor"] == "admin"),
        "{shown}"
    );
    let out = d.admin_cli(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    d.terminate();
}

#[test]
fn permission_matrix_sqlite() {
    permission_matrix(Backend::Sqlite);
}

#[test]
fn permission_matrix_postgres() {
    permission_matrix(Backend::Postgres);
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tokens_lifecycle(backend: Backend) {
    let mut d = Daemon::start_with(backend, &fixtures(), options());
    // Created with a name, shown once on stdout.
    let out = d.admin_cli(&[
        "tokens",
        "create",
        "--user",
        "reader",
        "--name",
        "dashboard",
        "--expires",
        "1d",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("cf_") && token.len() == 84, "{token}");
    let id = token[3..19].to_owned();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shown only this once"),
        "{}",
        text(&out)
    );
    // Listed without the secret.
    let out = d.admin_cli(&["tokens", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !listed.contains(&token[20..]),
        "the secret is listed: {listed}"
    );
    let v: Value = serde_json::from_str(&listed).expect("json");
    let row = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in {v}"))
        .clone();
    assert_eq!(row["user"], "reader");
    assert_eq!(row["name"], "dashboard");
    assert!(row["last_used_at"].is_null(), "{row}");
    assert!(row.get("secret_hash").is_none(), "{row}");
    // Unknown users get no token; nonsense durations are refused.
    let out = d.admin_cli(&["tokens", "create", "--user", "mallory"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no user `mallory`"),
        "{}",
        text(&out)
    );
    let out = d.admin_cli(&["tokens", "create", "--user", "reader", "--expires", "soon"]);
    assert!(!out.status.success(), "{}", text(&out));

    // The CLI sends the token from CLEARFLOW_TOKEN …
    let out = d.cli_as(Some(&token), &["instances", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    // … from --token-file …
    let file = d.dir.path().join("reader.token");
    std::fs::write(&file, format!("{token}\n")).expect("token file");
    let out = d.cli_as(
        None,
        &[
            "instances",
            "list",
            "--token-file",
            file.to_str().expect("path"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // … or from ~/.config/clearflow/token (HOME is the daemon's folder).
    let default = d.dir.path().join(".config/clearflow");
    std::fs::create_dir_all(&default).expect("config dir");
    std::fs::write(default.join("token"), &token).expect("default token file");
    let out = d.cli_as(None, &["instances", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(default.join("token")).expect("rm");
    // Without any, a 401 with a hint; with a role that may not, a 403.
    let out = d.cli_as(None, &["instances", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("401") && err.contains("CLEARFLOW_TOKEN"),
        "{err}"
    );
    let out = d.cli_as(Some(&token), &["mail", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        text(&out)
    );
    let used = d.admin_cli(&["tokens", "list", "--user", "reader", "--json"]);
    let v: Value = serde_json::from_slice(&used.stdout).expect("json");
    assert!(v["items"][0]["last_used_at"].is_i64(), "{v}");

    // Expiry follows the daemon's clock.
    let (status, _) = d.try_get_as(Some(&token), "/v1/instances").expect("GET");
    assert_eq!(status, 200);
    d.advance(TimeDelta::hours(25));
    let (status, v) = d.try_get_as(Some(&token), "/v1/instances").expect("GET");
    assert_problem(status, &v, 401, "an expired token");

    // Revocation takes effect on the next request.
    let clerk = d.create_token("clerk", "90d");
    let (status, _) = d.try_get_as(Some(&clerk), "/v1/workflows").expect("GET");
    assert_eq!(status, 200);
    let clerk_id = clerk[3..19].to_owned();
    let out = d.admin_cli(&["tokens", "revoke", &clerk_id]);
    assert!(out.status.success(), "{}", text(&out));
    let (status, v) = d.try_get_as(Some(&clerk), "/v1/workflows").expect("GET");
    assert_problem(status, &v, 401, "a revoked token");
    let out = d.admin_cli(&["tokens", "revoke", &clerk_id]);
    assert_eq!(out.status.code(), Some(1), "revoking twice: {}", text(&out));
    // A wrong secret for a real id is refused like an unknown token.
    let forged = format!("{}{}", &clerk[..20], "0".repeat(64));
    let (status, v) = d.try_get_as(Some(&forged), "/v1/workflows").expect("GET");
    assert_problem(status, &v, 401, "a wrong secret");

    // A user removed from the users file loses access at the next SIGHUP.
    let ops = d.create_token("ops", "90d");
    let (status, _) = d.try_get_as(Some(&ops), "/v1/mail").expect("GET");
    assert_eq!(status, 200);
    let users = std::fs::read_to_string(d.users_path()).expect("users");
    let without: String = users.replace("id = \"ops\"", "id = \"ops-retired\"");
    std::fs::write(d.users_path(), without).expect("users");
    d.signal("HUP");
    d.wait_until(
        "the users file is reloaded",
        std::time::Duration::from_secs(30),
        |d| d.try_get_as(Some(&ops), "/v1/mail").expect("GET").0 == 401,
    );

    // Each refusal is audited with its reason, never the secret.
    let log = d.get("/v1/audit?limit=1000");
    let reasons: Vec<&str> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == "auth.refused")
        .filter_map(|i| i["detail"]["reason"].as_str())
        .collect();
    for r in [
        "expired token",
        "revoked token",
        "wrong token secret",
        "user not in the users file",
        "no bearer token",
    ] {
        assert!(reasons.contains(&r), "{r} not in {reasons:?}");
    }
    assert!(
        !log.to_string().contains(&token[20..]),
        "a secret in the audit log"
    );
    assert!(
        log["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["kind"] == "token.revoked"
                && i["detail"]["token"] == clerk_id.as_str()
                && i["actor"].as_str().is_some_and(|a| a.starts_with("host:"))),
        "{log}"
    );
    d.terminate();
}

#[test]
fn tokens_lifecycle_sqlite() {
    tokens_lifecycle(Backend::Sqlite);
}

#[test]
fn tokens_lifecycle_postgres() {
    tokens_lifecycle(Backend::Postgres);
}

#[test]
fn bodies_over_the_limit_are_refused_and_unknown_paths_need_a_token() {
    let mut d = Daemon::start_with(Backend::Sqlite, &fixtures(), options());
    let big = "x".repeat(2 * 1024 * 1024);
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/workflows/validate", d.url()))
        .bearer_auth(d.token.clone().expect("token"))
        .body(big)
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 413);
    // Unknown paths do not reveal themselves to anonymous callers.
    let (status, _) = d.try_get_as(None, "/v1/nothing/here").expect("GET");
    assert_eq!(status, 401);
    let (status, _) = d.try_get("/v1/nothing/here").expect("GET");
    assert_eq!(status, 404);
    // Health and readiness are public.
    assert_eq!(d.try_get_as(None, "/healthz").expect("GET").0, 200);
    assert_eq!(d.try_get_as(None, "/readyz").expect("GET").0, 200);
    let r = reqwest::blocking::get(format!("{}/v1/workflows", d.url())).expect("GET");
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    d.terminate();
}

/// Runs SQL directly on the daemon's database, as an intruder with database access would.
fn tamper(d: &Daemon, sql: &str) -> u64 {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match d.backend {
            Backend::Sqlite => {
                let path = d.store_url.trim_start_matches("sqlite://");
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
                    .await
                    .expect("sqlite");
                let n = sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .expect(sql)
                    .rows_affected();
                c.close().await.expect("close");
                n
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&d.store_url).await.expect("pg");
                let n = sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .expect(sql)
                    .rows_affected();
                c.close().await.expect("close");
                n
            }
        }
    })
}

fn verify(d: &Daemon, args: &[&str]) -> (bool, String) {
    let mut all = vec!["audit", "verify"];
    all.extend(args);
    let out = d.admin_cli(&all);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}",
        text(&out)
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn audit_tampering(backend: Backend) {
    let mut d = Daemon::start_with(backend, &fixtures(), options());
    let ids: Vec<String> = (0..3)
        .map(|_| d.start_instance("timers", &json!({}), None).0)
        .collect();
    d.settle();
    d.advance(TimeDelta::hours(4));
    d.settle();
    for id in &ids {
        assert_eq!(d.instance(id)["instance"]["status"], "completed");
    }
    // Some security events: a refusal, a revocation.
    let _ = d.try_get_as(None, "/v1/instances");
    let t = d.create_token("clerk", "1d");
    assert!(
        d.admin_cli(&["tokens", "revoke", &t[3..19]])
            .status
            .success()
    );

    let (ok, out) = verify(&d, &[]);
    assert!(ok, "an honest store verifies:\n{out}");
    assert!(
        out.contains("every chain intact") && out.contains("audit head:"),
        "{out}"
    );
    let rows = |id: &str| {
        d.instance(id)["history"]
            .as_array()
            .expect("history")
            .clone()
    };
    let history = rows(&ids[0]);
    assert!(history.len() >= 5, "{history:?}");

    // 1. A history row altered in place.
    let altered = history[1]["id"].as_i64().expect("id");
    assert_eq!(
        tamper(
            &d,
            &format!("UPDATE history SET actor = 'someone-else' WHERE id = {altered}")
        ),
        1
    );
    // 2. A history row deleted in the middle of another instance.
    let second = rows(&ids[1]);
    let deleted = second[2]["id"].as_i64().expect("id");
    assert_eq!(
        tamper(&d, &format!("DELETE FROM history WHERE id = {deleted}")),
        1
    );
    // 3. The last history row of a third instance deleted (only the head row knows).
    let third = rows(&ids[2]);
    let last = third.last().expect("rows")["id"].as_i64().expect("id");
    assert_eq!(
        tamper(&d, &format!("DELETE FROM history WHERE id = {last}")),
        1
    );
    // 4. An audit row altered, 5. the audit log's latest row deleted.
    assert_eq!(
        tamper(&d, "UPDATE audit SET actor = 'nobody' WHERE seq = 2"),
        1
    );
    assert_eq!(
        tamper(
            &d,
            "DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)"
        ),
        1
    );

    let (ok, out) = verify(&d, &[]);
    assert!(!ok, "tampering must fail verification:\n{out}");
    let line = |needle: &[&str]| out.lines().any(|l| needle.iter().all(|n| l.contains(n)));
    assert!(
        line(&[
            &format!("history row {altered} "),
            &ids[0],
            "position 2",
            "altered"
        ]),
        "{out}"
    );
    assert!(
        line(&["history", &ids[1], "position 3", "missing"]),
        "{out}"
    );
    assert!(
        line(&["history", &ids[2], "at the end", "missing"]),
        "{out}"
    );
    assert!(line(&["audit row 2 ", "altered"]), "{out}");
    assert!(line(&["audit", "at the end", "missing"]), "{out}");
    assert!(
        out.contains("FAILED: 5 problem(s)"),
        "exactly the five, no noise:\n{out}"
    );

    // One instance only.
    let (ok, out) = verify(&d, &["--instance", &ids[1]]);
    assert!(!ok);
    assert!(
        out.contains(&ids[1]) && !out.contains(&ids[0]) && !out.contains("audit"),
        "{out}"
    );
    let (ok, out) = verify(&d, &["--instance", "00000000-0000-0000-0000-000000000000"]);
    assert!(ok, "{out}");
    // Altered and re-hashed: the next row's link names it.
    let hist = rows(&ids[0]);
    let first = hist[0]["id"].as_i64().expect("id");
    tamper(
        &d,
        &format!("UPDATE history SET hash = 'f00d' WHERE id = {first}"),
    );
    let (_, out) = verify(&d, &["--instance", &ids[0], "--json"]);
    let v: Value = serde_json::from_str(&out).expect("json");
    let breaches = v["breaches"].as_array().expect("breaches");
    assert!(
        breaches.iter().any(|b| b["id"] == first
            && b["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with("altered"))),
        "{v}"
    );
    assert!(
        breaches.iter().any(|b| b["position"] == 2
            && b["problem"]
                .as_str()
                .is_some_and(|p| p.contains(&format!("previous row (row {first})")))),
        "{v}"
    );
    d.terminate();
}

#[test]
fn audit_verify_detects_tampering_sqlite() {
    audit_tampering(Backend::Sqlite);
}

#[test]
fn audit_verify_detects_tampering_postgres() {
    audit_tampering(Backend::Postgres);
}
