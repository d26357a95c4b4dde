//! End-to-end: a notification that lists instances read from the store (the monthly
//! joint review agenda) holds exactly the matching running cases, on both backends.

use clearflow_testkit as support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Backend, Daemon, Options};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/digest")
}

/// The decoded text part of every message in a Maildir's `new/` folder.
fn texts(maildir: &Path) -> Vec<String> {
    let python = std::env::var("CLEARFLOW_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import email, email.policy, pathlib, sys, json
out = []
for p in sorted(pathlib.Path(sys.argv[1]).glob('new/*')):
    m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
    out.append(m.get_body(preferencelist=('plain',)).get_content())
print(json.dumps(out))
"#;
    let o = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(maildir)
        .output()
        .expect("running python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

/// A daemon with the digest fixtures, the shipped templates and mail to its maildir.
fn daemon(backend: Backend) -> Daemon {
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/templates");
    Daemon::start_with(
        backend,
        &fixtures(),
        Options {
            extra: format!(
                "\n[mail]\ntemplates = \"{}\"\n[mail.transport]\nkind = \"maildir\"\npath = \"var/maildir\"\n",
                templates.display()
            ),
            ..Options::default()
        },
    )
}

fn agenda_lists_exactly_the_suspected_and_key_cases(backend: Backend) {
    let mut d = daemon(backend);
    let cases = [
        ("甲 key running", "key"),
        ("乙 suspected running", "suspected"),
        ("丙 pending running", "pending"),
        ("丁 key decided", "key"),
        ("戊 suspected running", "suspected"),
    ];
    let mut ids = Vec::new();
    for (title, level) in cases {
        let (id, _) = d.start_instance("case", &json!({ "title": title, "level": level }), None);
        ids.push(id);
    }
    d.settle();
    // The fourth case is decided and ends: it must not be on the agenda.
    d.post(
        &format!("/v1/instances/{}/signal", ids[3]),
        &json!({ "name": "decided" }),
    );
    d.wait_until("the decided case ends", Duration::from_secs(30), |d| {
        d.instance(&ids[3])["instance"]["status"] == "completed"
    });
    let (agenda, _) = d.start_instance("agenda", &json!({}), None);
    d.wait_until("the agenda is sent", Duration::from_secs(30), |d| {
        d.instance(&agenda)["instance"]["status"] == "completed"
            && d.get("/v1/mail")["items"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["status"] == "sent"))
    });
    let mail: Vec<Value> = d.get("/v1/mail")["items"].as_array().unwrap().clone();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(
        mail[0]["subject"].as_str().unwrap().contains("共3件"),
        "{mail:?}"
    );
    let texts = texts(&d.dir.path().join("var/maildir"));
    assert_eq!(texts.len(), 1);
    let text = &texts[0];
    for (i, (title, _)) in cases.iter().enumerate() {
        let listed = text.contains(title);
        let expected = [0, 1, 4].contains(&i);
        assert_eq!(listed, expected, "case {title}: listed {listed}\n{text}");
        if expected {
            assert!(text.contains(&ids[i]), "the case id is listed:\n{text}");
        }
    }
    // Oldest first.
    let pos = |t: &str| text.find(t).unwrap();
    assert!(pos(cases[0].0) < pos(cases[1].0) && pos(cases[1].0) < pos(cases[4].0));
}

#[test]
fn agenda_lists_exactly_the_suspected_and_key_cases_sqlite() {
    agenda_lists_exactly_the_suspected_and_key_cases(Backend::Sqlite);
}

#[test]
fn agenda_lists_exactly_the_suspected_and_key_cases_postgres() {
    agenda_lists_exactly_the_suspected_and_key_cases(Backend::Postgres);
}

/// The weekly overdue digest: open tasks of a role past their due date, read from the
/// task store when the mail is queued — not the ones still in time.
fn overdue_digest_lists_the_roles_late_tasks(backend: Backend) {
    let mut d = daemon(backend);
    d.start_instance("errand", &json!({ "title": "甲 long overdue" }), None);
    d.settle();
    d.advance(chrono::TimeDelta::days(2));
    d.start_instance("errand", &json!({ "title": "乙 still in time" }), None);
    d.settle();
    let (digest, _) = d.start_instance("overdue", &json!({}), None);
    d.wait_until("the digest is sent", Duration::from_secs(30), |d| {
        d.instance(&digest)["instance"]["status"] == "completed"
            && d.get("/v1/mail")["items"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["status"] == "sent"))
    });
    let mail: Vec<Value> = d.get("/v1/mail")["items"].as_array().unwrap().clone();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(
        mail[0]["subject"].as_str().unwrap().contains("共1件"),
        "{mail:?}"
    );
    let texts = texts(&d.dir.path().join("var/maildir"));
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("甲 long overdue"), "{}", texts[0]);
    assert!(!texts[0].contains("乙 still in time"), "{}", texts[0]);
    assert!(texts[0].contains("角色 handler"), "{}", texts[0]);
}

#[test]
fn overdue_digest_lists_the_roles_late_tasks_sqlite() {
    overdue_digest_lists_the_roles_late_tasks(Backend::Sqlite);
}

#[test]
fn overdue_digest_lists_the_roles_late_tasks_postgres() {
    overdue_digest_lists_the_roles_late_tasks(Backend::Postgres);
}
