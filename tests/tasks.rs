//! Human tasks end to end with the real daemon, on SQLite and PostgreSQL: a three-tier
//! review with separation of duties, form validation, rejection back to the draft, claim
//! conflicts, reminders and escalation delivered to a real SMTP server, escalation by
//! reassignment and by routing, and tasks closed when their branch is cancelled.

use clearflow_testkit as support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::model::{MailList, ProblemBody, Task, TaskDetail, TaskPage};
use support::smtp;
use support::{Backend, Daemon, Options};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tasks")
}

/// The bearer token of `user` on `d`, created once with `clearflow tokens create`.
/// `nobody` is not in the users file: they get a well-formed token the store never issued.
fn token_for(d: &Daemon, user: &str) -> String {
    thread_local! {
        static TOKENS: RefCell<HashMap<(String, String), String>> = RefCell::new(HashMap::new());
    }
    if user == "nobody" {
        return format!("cf_00000000000000ff_{}", "0".repeat(64));
    }
    TOKENS.with(|t| {
        t.borrow_mut()
            .entry((d.url(), user.to_owned()))
            .or_insert_with(|| d.create_token(user, "never"))
            .clone()
    })
}

/// Every role of the task fixtures may act on tasks.
const ROLES: &str =
    "[roles.handler]\ntasks = true\n\n[roles.head]\ntasks = true\n\n[roles.leader]\ntasks = true\n";

/// A daemon with the task fixtures, the test users and the shipped templates; mail goes
/// to `smtp` when given.
fn daemon(backend: Backend, smtp_port: Option<u16>) -> Daemon {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut extra = format!(
        "\n[mail]\ntemplates = \"{}\"\nretry_initial_seconds = 1\n",
        root.join("workflows/templates").display()
    );
    let users = std::fs::read_to_string(fixtures().join("users/users.toml")).expect("users");
    if let Some(port) = smtp_port {
        extra += &format!(
            "[mail.transport]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\n"
        );
    }
    Daemon::start_with(
        backend,
        &fixtures(),
        Options {
            extra,
            users,
            roles: ROLES.into(),
            ..Options::default()
        },
    )
}

/// An API call as `user` (no `Authorization` header for `None`): the status and the body.
fn call(
    d: &Daemon,
    user: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let http = reqwest::blocking::Client::new();
    let url = format!("{}{path}", d.url());
    let mut req = match method {
        "GET" => http.get(url),
        _ => http.post(url),
    };
    if let Some(u) = user {
        req = req.bearer_auth(token_for(d, u));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req
        .send()
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn ok(d: &Daemon, user: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = call(d, Some(user), method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path} as {user}: {status} {v}"
    );
    v
}

/// [`ok`], read as the API's model type `T`.
fn ok_typed<T: DeserializeOwned>(
    d: &Daemon,
    user: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> T {
    let v = ok(d, user, method, path, body);
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{method} {path}: {e}: {v}"))
}

/// An error answer, read as the API's problem body.
fn problem(v: &Value) -> ProblemBody {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not a problem: {e}: {v}"))
}

/// The open tasks `user` sees for `instance`.
fn tasks_of(d: &Daemon, user: &str, instance: &str) -> Vec<Task> {
    ok_typed::<TaskPage>(
        d,
        user,
        "GET",
        &format!("/v1/tasks?instance={instance}"),
        None,
    )
    .items
}

/// Waits until `user` sees exactly one open task of `instance` at `step`; returns its id.
fn open_task(d: &mut Daemon, user: &str, instance: &str, step: &str) -> String {
    let mut id = String::new();
    d.wait_until(
        &format!("{user} sees the open task `{step}`"),
        Duration::from_secs(30),
        |d| {
            let items = tasks_of(d, user, instance);
            match items.as_slice() {
                [t] if t.step == step => {
                    id = t.id.clone();
                    true
                }
                _ => false,
            }
        },
    );
    id
}

fn three_tier_review(backend: Backend) {
    let mut d = daemon(backend, None);
    let (inst, _) = d.start_instance("review", &json!({"case_number": "JW-2025-7"}), None);
    let draft = open_task(&mut d, "wang", &inst, "draft");

    // No token, or a token of nobody: 401.
    assert_eq!(call(&d, None, "GET", "/v1/tasks", None).0, 401);
    assert_eq!(call(&d, Some("nobody"), "GET", "/v1/tasks", None).0, 401);
    // Not a handler: the task is invisible and cannot be claimed.
    assert!(tasks_of(&d, "zhao", &inst).is_empty());
    assert_eq!(
        call(
            &d,
            Some("zhao"),
            "POST",
            &format!("/v1/tasks/{draft}/claim"),
            None
        )
        .0,
        404
    );

    // Every form violation at once.
    let (status, v) = call(
        &d,
        Some("wang"),
        "POST",
        &format!("/v1/tasks/{draft}/complete"),
        Some(json!({"form": {"summary": "short", "pages": 0}})),
    );
    assert_eq!(status, 422, "{v}");
    let errors = problem(&v).errors.expect("errors");
    assert_eq!(errors.len(), 2, "{v}");
    assert!(errors.iter().any(|e| e.contains("/summary")), "{v}");
    assert!(errors.iter().any(|e| e.contains("/pages")), "{v}");
    // The draft cannot be rejected (no `on_reject`), and a rejection needs a reason.
    let (status, v) = call(
        &d,
        Some("wang"),
        "POST",
        &format!("/v1/tasks/{draft}/reject"),
        Some(json!({"reason": "no"})),
    );
    assert_eq!(status, 422, "{v}");
    assert!(problem(&v).detail.contains("no `on_reject`"), "{v}");
    assert_eq!(
        call(
            &d,
            Some("wang"),
            "POST",
            &format!("/v1/tasks/{draft}/reject"),
            Some(json!({}))
        )
        .0,
        400
    );

    // Claims: chen claims; wang can neither claim nor complete it; chen gives it back.
    ok(
        &d,
        "chen",
        "POST",
        &format!("/v1/tasks/{draft}/claim"),
        None,
    );
    let (status, v) = call(
        &d,
        Some("wang"),
        "POST",
        &format!("/v1/tasks/{draft}/claim"),
        None,
    );
    assert_eq!(status, 409, "{v}");
    assert!(problem(&v).detail.contains("claimed by chen"), "{v}");
    let good = json!({"form": {"summary": "the allegation was checked", "pages": 3}});
    assert_eq!(
        call(
            &d,
            Some("wang"),
            "POST",
            &format!("/v1/tasks/{draft}/complete"),
            Some(good.clone())
        )
        .0,
        409
    );
    assert_eq!(
        call(
            &d,
            Some("wang"),
            "POST",
            &format!("/v1/tasks/{draft}/unclaim"),
            None
        )
        .0,
        409
    );
    let mine: TaskPage = ok_typed(&d, "chen", "GET", "/v1/tasks?mine=true", None);
    assert_eq!(mine.items.len(), 1, "{mine:?}");
    ok(
        &d,
        "chen",
        "POST",
        &format!("/v1/tasks/{draft}/unclaim"),
        None,
    );

    // wang drafts; li.na (head and leader) takes the first review.
    let v: Task = ok_typed(
        &d,
        "wang",
        "POST",
        &format!("/v1/tasks/{draft}/complete"),
        Some(good),
    );
    assert_eq!(v.status, "completed");
    let r1 = open_task(&mut d, "li.na", &inst, "review_1");
    ok(
        &d,
        "li.na",
        "POST",
        &format!("/v1/tasks/{r1}/complete"),
        Some(json!({"form": {}})),
    );

    // She holds the leader role too, but may not take the second tier.
    let r2 = open_task(&mut d, "liu", &inst, "review_2");
    let (status, v) = call(
        &d,
        Some("li.na"),
        "POST",
        &format!("/v1/tasks/{r2}/complete"),
        Some(json!({"form": {}})),
    );
    assert_eq!(status, 403, "{v}");
    assert_eq!(
        problem(&v).detail,
        "li.na completed `review_1`; `review_2` needs a different person",
        "{v}"
    );
    let shown: TaskDetail = ok_typed(&d, "li.na", "GET", &format!("/v1/tasks/{r2}"), None);
    assert_eq!(
        shown.task.status, "open",
        "a refusal changes nothing: {shown:?}"
    );

    // liu rejects: back to the draft, the reason in the history.
    ok(
        &d,
        "liu",
        "POST",
        &format!("/v1/tasks/{r2}/reject"),
        Some(json!({"reason": "the evidence list is missing"})),
    );
    let draft2 = open_task(&mut d, "wang", &inst, "draft");
    assert_ne!(draft2, draft);
    let shown = d.show_instance(&inst);
    let rejected = shown
        .history
        .iter()
        .find(|h| h.kind == "task_rejected")
        .unwrap_or_else(|| panic!("no task_rejected in {shown:?}"));
    assert_eq!(rejected.step.as_deref(), Some("review_2"));
    assert_eq!(rejected.detail["reason"], "the evidence list is missing");
    assert_eq!(rejected.actor, "user:liu");
    let closed: TaskDetail = ok_typed(&d, "liu", "GET", &format!("/v1/tasks/{r2}"), None);
    assert_eq!(closed.task.status, "rejected");
    assert_eq!(
        closed.task.result.as_ref().expect("a result")["reason"],
        "the evidence list is missing"
    );

    // Through the CLI this time, with the token from CLEARFLOW_TOKEN.
    let form = d.dir.path().join("form.json");
    std::fs::write(
        &form,
        r#"{"summary": "now with the evidence list", "pages": 4}"#,
    )
    .unwrap();
    let url = d.url();
    let tokens: HashMap<&str, String> = ["wang", "zhao", "li.na"]
        .into_iter()
        .map(|u| (u, token_for(&d, u)))
        .collect();
    let cli = |args: &[&str], user: &str| {
        std::process::Command::new(&*support::BIN)
            .args(args)
            .env("CLEARFLOW_SERVER", &url)
            .env("CLEARFLOW_TOKEN", &tokens[user])
            .output()
            .expect("running clearflow")
    };
    let out = cli(&["tasks", "list", "--json"], "wang");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: TaskPage = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.items.iter().any(|t| t.id == draft2), "{listed:?}");
    let out = cli(
        &[
            "tasks",
            "complete",
            &draft2,
            "--form",
            form.to_str().unwrap(),
        ],
        "wang",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r1 = open_task(&mut d, "zhao", &inst, "review_1");
    let out = cli(
        &["tasks", "complete", &r1, "--form", form.to_str().unwrap()],
        "wang",
    );
    assert!(!out.status.success(), "wang holds no head role");
    ok(
        &d,
        "zhao",
        "POST",
        &format!("/v1/tasks/{r1}/complete"),
        Some(json!({"form": {}})),
    );
    let r2 = open_task(&mut d, "li.na", &inst, "review_2");
    let out = cli(
        &["tasks", "complete", &r2, "--form", form.to_str().unwrap()],
        "li.na",
    );
    assert!(
        out.status.success(),
        "li.na did not review this round: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_until("the review is approved", Duration::from_secs(30), |d| {
        d.show_instance(&inst).instance.outcome.as_deref() == Some("approved")
    });
}

#[test]
fn three_tier_review_sqlite() {
    three_tier_review(Backend::Sqlite);
}

#[test]
fn three_tier_review_postgres() {
    three_tier_review(Backend::Postgres);
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The recipients (`To:` and `Cc:` addresses) of each delivered message, in file order.
fn delivered(server: &smtp::SmtpServer) -> Vec<String> {
    server
        .messages()
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m);
            let head = text
                .split("\r\n\r\n")
                .next()
                .unwrap_or_default()
                .replace("\r\n ", " ");
            head.lines()
                .filter(|l| l.starts_with("To:") || l.starts_with("Cc:"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The subjects of the sent mail of `step`, oldest first, from the outbox.
fn sent_subjects(d: &Daemon) -> Vec<String> {
    let mut rows = d
        .get_typed::<MailList>("/v1/mail?status=sent&limit=1000")
        .items;
    rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    rows.into_iter().map(|r| r.subject).collect()
}

fn wait_mail(d: &mut Daemon, server: &smtp::SmtpServer, n: usize) -> Vec<String> {
    server.wait_for_messages(n, Duration::from_secs(60));
    d.settle();
    let got = delivered(server);
    assert_eq!(
        got.len(),
        n,
        "expected {n} messages, got {got:#?}\n{:#?}",
        sent_subjects(d)
    );
    got
}

fn reminders_and_escalation(backend: Backend) {
    let server = smtp::SmtpServer::start(smtp::ServerOptions::default());
    let mut d = daemon(backend, Some(server.port()));
    // Monday 2025-03-03 17:00 in Shanghai: due at the end of Thursday 03-06.
    let (inst, _) = d.start_instance(
        "remind",
        &json!({"who": "wang", "case_number": "JW-9"}),
        None,
    );
    let task = open_task(&mut d, "wang", &inst, "verify");
    let got = wait_mail(&mut d, &server, 1);
    assert!(got[0].contains("wang@jw.example.cn"), "{got:?}");
    assert!(
        sent_subjects(&d)[0].starts_with("New task"),
        "{:?}",
        sent_subjects(&d)
    );

    // The working day before the due date (from the start of Wednesday 03-05, local).
    d.set_clock(at("2025-03-04T15:59:00Z"));
    d.settle();
    assert_eq!(server.messages().len(), 1, "no reminder before its time");
    d.set_clock(at("2025-03-04T16:00:01Z"));
    let got = wait_mail(&mut d, &server, 2);
    assert!(got[1].contains("wang@jw.example.cn"), "{got:?}");
    // At the due date.
    d.set_clock(at("2025-03-06T15:59:59.999Z"));
    let got = wait_mail(&mut d, &server, 3);
    assert!(got[2].contains("wang@jw.example.cn"), "{got:?}");
    // Every working day after it: Friday 03-07.
    d.set_clock(at("2025-03-07T15:59:59.999Z"));
    let got = wait_mail(&mut d, &server, 4);
    assert!(got[3].contains("wang@jw.example.cn"), "{got:?}");
    let overdue: TaskPage = ok_typed(&d, "wang", "GET", "/v1/tasks?overdue=true", None);
    assert_eq!(overdue.items[0].id, task, "{overdue:?}");
    let subjects = sent_subjects(&d);
    assert!(
        subjects[1..].iter().all(|s| s.starts_with("Reminder")),
        "{subjects:?}"
    );

    // Two working days late (end of Monday 03-10): the leader in charge and wang's leader
    // are told, the task goes to the department heads (who are told), and the repeated
    // reminder now goes to them.
    d.set_clock(at("2025-03-10T15:59:59.999Z"));
    let got = wait_mail(&mut d, &server, 7);
    let subjects = sent_subjects(&d);
    let escalation = subjects
        .iter()
        .position(|s| s.starts_with("Overdue"))
        .unwrap_or_else(|| panic!("{subjects:?}"));
    assert!(
        subjects[escalation].contains("2 working days late"),
        "{subjects:?}"
    );
    let esc_mail = got
        .iter()
        .find(|m| m.contains("liu@jw.example.cn"))
        .expect("the escalation reached liu");
    assert!(
        esc_mail.contains("zhao@jw.example.cn"),
        "wang's leader is told too: {esc_mail}"
    );
    assert!(
        subjects
            .iter()
            .filter(|s| s.starts_with("New task"))
            .count()
            == 2,
        "{subjects:?}"
    );
    let shown: TaskDetail = ok_typed(&d, "zhao", "GET", &format!("/v1/tasks/{task}"), None);
    assert_eq!(shown.task.role.as_deref(), Some("head"), "{shown:?}");
    assert!(shown.task.assignee.is_none(), "{shown:?}");
    assert_eq!(
        call(&d, Some("wang"), "GET", &format!("/v1/tasks/{task}"), None).0,
        404,
        "no longer wang's"
    );
    let history = d.history(&inst);
    for kind in [
        "task_reminded",
        "task_escalated",
        "task_reassigned",
        "mail_queued",
    ] {
        assert!(
            history.iter().any(|(k, _)| k == kind),
            "no {kind} in {history:?}"
        );
    }

    // Completed: the reminders stop.
    ok(
        &d,
        "zhao",
        "POST",
        &format!("/v1/tasks/{task}/complete"),
        Some(json!({"form": {"done": true}})),
    );
    d.wait_until("the instance ends", Duration::from_secs(30), |d| {
        d.show_instance(&inst).instance.status == "completed"
    });
    d.set_clock(at("2025-03-20T16:00:00Z"));
    d.settle();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.messages().len(), 7, "{:#?}", sent_subjects(&d));
    assert!(d.show_instance(&inst).pending.is_empty());
}

#[test]
fn reminders_and_escalation_sqlite() {
    reminders_and_escalation(Backend::Sqlite);
}

#[test]
fn reminders_and_escalation_postgres() {
    reminders_and_escalation(Backend::Postgres);
}

fn goto_and_cancelled_branch(backend: Backend) {
    let mut d = daemon(backend, None);
    // Escalation by routing: due in 2 days, abandoned one day later.
    let (inst, _) = d.start_instance("goto", &json!({}), None);
    let verify = open_task(&mut d, "wang", &inst, "verify");
    ok(
        &d,
        "chen",
        "POST",
        &format!("/v1/tasks/{verify}/claim"),
        None,
    );
    d.advance(chrono::TimeDelta::days(3) + chrono::TimeDelta::minutes(1));
    let take_over = open_task(&mut d, "liu", &inst, "take_over");
    let closed: TaskDetail = ok_typed(&d, "chen", "GET", &format!("/v1/tasks/{verify}"), None);
    assert_eq!(closed.task.status, "cancelled", "{closed:?}");
    assert_eq!(
        call(
            &d,
            Some("chen"),
            "POST",
            &format!("/v1/tasks/{verify}/complete"),
            Some(json!({"form": {}}))
        )
        .0,
        409,
        "a cancelled task cannot be completed"
    );
    ok(
        &d,
        "liu",
        "POST",
        &format!("/v1/tasks/{take_over}/complete"),
        Some(json!({"form": {}})),
    );
    d.wait_until("taken over", Duration::from_secs(30), |d| {
        d.show_instance(&inst).instance.outcome.as_deref() == Some("taken_over")
    });

    // The task of a losing branch is cancelled, with its reminder timer.
    let (inst, _) = d.start_instance("branches", &json!({}), None);
    let slow = open_task(&mut d, "wang", &inst, "slow");
    assert_eq!(
        d.show_instance(&inst).pending.len(),
        2,
        "the hour and the reminder"
    );
    d.advance(chrono::TimeDelta::hours(1));
    d.wait_until("the race ends", Duration::from_secs(30), |d| {
        d.show_instance(&inst).instance.status == "completed"
    });
    let closed: TaskDetail = ok_typed(&d, "wang", "GET", &format!("/v1/tasks/{slow}"), None);
    assert_eq!(closed.task.status, "cancelled", "{closed:?}");
    assert!(tasks_of(&d, "wang", &inst).is_empty());
    let all: TaskPage = ok_typed(
        &d,
        "wang",
        "GET",
        &format!("/v1/tasks?instance={inst}&status=any"),
        None,
    );
    assert_eq!(all.items.len(), 1, "{all:?}");
}

#[test]
fn goto_and_cancelled_branch_sqlite() {
    goto_and_cancelled_branch(Backend::Sqlite);
}

#[test]
fn goto_and_cancelled_branch_postgres() {
    goto_and_cancelled_branch(Backend::Postgres);
}
