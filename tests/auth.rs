//! Authentication, authorisation and audit with the real daemon on SQLite and PostgreSQL:
//! the permission matrix (every role against every endpoint), refused tokens (missing,
//! malformed, wrong, expired, revoked, of a user no longer in the users file), the
//! `tokens` commands, the CLI's credentials, and tamper detection by `audit verify`.

mod support;

use std::process::Output;

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{Backend, Daemon, Options, fixtures};

/// The test users: id and roles. `admin` (roles `admin` and `operator`) comes from the harness.
const USERS: &[(&str, &[&str])] = &[
    ("clerk", &["intake"]),
    ("reader", &["reader"]),
    ("officer", &["identity-officer"]),
    ("ops", &["admin"]),
    ("visitor", &["unconfigured"]),
];

/// What the test roles permit (beside the harness's `admin` and `operator`).
const ROLES: &str = "[roles.intake]\nstart = [\"timers\"]\ntasks = true\n\n\
                     [roles.reader]\nread_instances = true\n\n\
                     [roles.identity-officer]\nread_identity = true\n";

/// Everyone, including the harness's `admin`.
const ALL: &[&str] = &["admin", "clerk", "reader", "officer", "ops", "visitor"];
/// Holders of the `admin` permission.
const ADMINS: &[&str] = &["admin", "ops"];
/// Holders of `read_instances`.
const READERS: &[&str] = &["admin", "reader"];

/// One endpoint of the matrix: method, path (`{id}` is a running instance), body, and
/// the users allowed to call it. Rows for tasks and intake go here as those land.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [&'static str],
}

fn endpoints() -> Vec<Endpoint> {
    let e = |method, path, body: Option<Value>, allowed| Endpoint {
        method,
        path,
        body,
        allowed,
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
    ]
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

fn permission_matrix(backend: Backend) {
    let mut d = Daemon::start_with(backend, &fixtures(), options());
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
    let mut checked = 0;
    for ep in endpoints() {
        let path = ep.path.replace("{id}", &running);
        let what = format!("{} {path}", ep.method);
        // Without a token, with a malformed one, with an unknown one: 401, for everyone.
        for token in [
            None,
            Some("not-a-token"),
            Some(
                "cf_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ] {
            let (status, v) = call(&d, token, ep.method, &path, ep.body.as_ref());
            assert_problem(status, &v, 401, &format!("{what} with {token:?}"));
        }
        for (user, token) in &tokens {
            let (status, v) = call(&d, Some(token), ep.method, &path, ep.body.as_ref());
            if ep.allowed.contains(user) {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{what} as {user}: expected allowed, got {status} {v}"
                );
            } else {
                assert_problem(status, &v, 403, &format!("{what} as {user}"));
                assert_eq!(v["title"], "forbidden", "{what} as {user}: {v}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 100, "{checked} cells");
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
    assert!(count("auth.refused") >= 3 * endpoints().len(), "{log}");
    assert!(
        items.iter().any(|i| i["kind"] == "auth.forbidden"
            && i["actor"] == "visitor"
            && i["detail"]["path"] == "/v1/instances"),
        "{log}"
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
