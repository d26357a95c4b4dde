//! The web console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by Selenium from `tests/browser/console.py`) against the real
//! daemon with the shipped workflows: a whistleblower files a real-name complaint with
//! JavaScript off and follows it with the receipt code; staff sign in with password and
//! TOTP, complete the registration and screening tasks (a refused submission first), and
//! exchange messages with the whistleblower; refusals (no CSRF token, no role, lockout)
//! and axe-core on every page type. Then, on this side: the reporter's identity and the
//! receipt code are in no log and no mail, and session expiry follows the injected clock.
//! A second walk, on PostgreSQL: the identity custodian reads a real-name reporter's
//! identity through the case page only as the workflow allows (never through the
//! complaint, after the leader's approval through the false-accusation investigation),
//! with a reason that lands in the audit log; the TOTP secret is sealed in the store;
//! the drafter of the clarification is refused its self-review in plain words (不得兼审);
//! and, the case concluded, the whistleblower reads the feedback with the receipt code.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{TimeZone, Utc};
use clearflow_testkit::Backend;
use clearflow_testkit::flagship::{Flagship, root};
use serde_json::{Value, json};

use crate::flagship_complaints::{PLAIN, accept, assert_clean, child, file, id_of, reporter, sh};

const NAME: &str = "Lanxin Qiao-Recognisable";
const PHONE: &str = "13912345678";
const ID_NUMBER: &str = "110101199003071234";

/// The Python with selenium (scripts/test.sh's venv), and Chromium: both must be there.
fn python() -> String {
    let python = std::env::var("CLEARFLOW_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("CLEARFLOW_TEST_PYTHON is not set: run ./scripts/test.sh, which installs selenium and Chromium")
    });
    assert!(
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists(),
        "Chromium is missing: run ./scripts/test.sh, which installs chromium and chromium-driver"
    );
    python
}

fn staff(f: &Flagship, user: &str) -> String {
    let password = format!("{user}-correct horse battery");
    f.d.set_password(user, &password);
    format!("{user}:{password}")
}

#[test]
fn console_end_to_end() {
    let python = python();
    // Monday 2 November 2026, 09:30 in Beijing.
    let at = Utc.with_ymd_and_hms(2026, 11, 2, 1, 30, 0).unwrap();
    let mut f = Flagship::start(Backend::Sqlite, at);
    let intake_user = staff(&f, "li.na");
    let outsider = staff(&f, "lin.feng");
    let admin = staff(&f, "ops");
    let out = f.d.dir.path().join("browser");
    let shots = std::env::var("CLEARFLOW_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| out.join("screenshots"));
    let report = out.join("report.json");
    std::fs::create_dir_all(&out).expect("browser dir");
    let run = Command::new(&python)
        .arg(root().join("tests/browser/console.py"))
        .env("CLEARFLOW_URL", f.d.url())
        .env("CLEARFLOW_STAFF", &intake_user)
        .env("CLEARFLOW_OUTSIDER", &outsider)
        .env("CLEARFLOW_ADMIN", &admin)
        .env("CLEARFLOW_SECRETS", format!("{NAME}|{PHONE}|{ID_NUMBER}"))
        .env("CLEARFLOW_SCREENSHOTS", &shots)
        .env("CLEARFLOW_REPORT", &report)
        .env("CLEARFLOW_NOW", f.d.now().timestamp().to_string())
        .env(
            "CLEARFLOW_ADMIN_TOKEN",
            f.d.token.clone().expect("admin token"),
        )
        .output()
        .expect("running tests/browser/console.py");
    assert!(
        run.status.success(),
        "the browser test failed:\n{}\n{}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        f.d.logs()
    );
    let seen: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    println!("{seen:#}");
    let receipt = seen["receipt"].as_str().expect("the receipt code");

    // The identity and the receipt code are in no log and no mail.
    let logs = f.d.logs();
    for secret in [NAME, PHONE, ID_NUMBER, receipt] {
        assert!(!logs.contains(secret), "the daemon log contains `{secret}`");
    }
    f.d.settle();
    for m in f.smtp.messages() {
        let text = String::from_utf8_lossy(&m);
        for secret in [NAME, PHONE, ID_NUMBER, receipt] {
            assert!(
                !text.contains(secret),
                "a mail contains `{secret}`:\n{text}"
            );
        }
        assert!(
            !text.contains("证据已通过邮寄方式提交"),
            "a mail carries the whistleblower's message:\n{text}"
        );
    }
    // A new message was announced by case number only (the outbox's subjects).
    let mail = f.d.get("/v1/mail?limit=200");
    let subjects: Vec<&str> = mail["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|m| m["subject"].as_str())
        .collect();
    assert!(
        subjects.iter().any(|s| s.contains("有新的举报人留言")),
        "no mail announced the whistleblower's message: {subjects:?}"
    );
    assert_eq!(
        seen["session_expired"], true,
        "the session outlived its idle time"
    );
}

#[test]
fn identity_separation_and_feedback_postgres() {
    let python = python();
    let mut f = Flagship::start(Backend::Postgres, sh(2025, 3, 3));
    let r = reporter("web");
    let (c, receipt) = file(&mut f, "JB-2025-0901", PLAIN, Some(r.clone()));
    accept(&mut f, &c, "zhao.lei");
    f.complete(
        "zhao.lei",
        &c,
        "dispose",
        json!({"disposal": "investigation"}),
    );
    f.complete(
        "zhao.lei",
        &c,
        "verify",
        json!({"verdict": "malicious", "findings": "经核查，所反映问题系捏造。"}),
    );
    let fa = id_of(&child(&f, &c, "false-accusation"));
    let clar = id_of(&child(&f, &c, "clarification"));
    let draft = json!({"number": "市纪澄〔2025〕9号", "date": "2025-03-20", "findings": "经核查，反映问题不属实。"});
    f.complete("wu.hao", &clar, "draft", draft);
    f.complete("zhou.jian", &fa, "refer", json!({"refer": true}));
    f.complete(
        "zhao.lei",
        &fa,
        "investigate",
        json!({"identity_needed": true, "reason": "核实举报人是否故意捏造", "findings": "…"}),
    );
    let approval = f.task("zhou.jian", &fa, "identity_request");
    let approver = format!(
        "{}:{}",
        f.token("zhou.jian"),
        approval["id"].as_str().expect("task id")
    );
    let custodian = staff(&f, "ma.guoqiang");
    let drafter = staff(&f, "wu.hao");
    let out = f.d.dir.path().join("browser");
    std::fs::create_dir_all(&out).expect("browser dir");
    let report = out.join("identity.json");
    let shots = std::env::var("CLEARFLOW_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| out.join("screenshots"));
    let secrets = ["name", "phone", "id_number"].map(|k| r[k].as_str().unwrap().to_owned());
    let run = Command::new(&python)
        .arg(root().join("tests/browser/console.py"))
        .arg("identity")
        .env("CLEARFLOW_URL", f.d.url())
        .env("CLEARFLOW_STAFF", &custodian)
        .env("CLEARFLOW_SECRETS", secrets.join("|"))
        .env("CLEARFLOW_CASE", &c)
        .env("CLEARFLOW_INVESTIGATION", &fa)
        .env("CLEARFLOW_APPROVER", &approver)
        .env("CLEARFLOW_DRAFTER", &drafter)
        .env("CLEARFLOW_SCREENSHOTS", &shots)
        .env("CLEARFLOW_REPORT", &report)
        .env("CLEARFLOW_NOW", f.d.now().timestamp().to_string())
        .output()
        .expect("running tests/browser/console.py identity");
    assert!(
        run.status.success(),
        "the identity walk failed:\n{}\n{}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        f.d.logs()
    );
    let seen: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");

    // One read, by the custodian, with the reason typed and the approval it rests on;
    // the two pages that offered no form recorded nothing.
    let audit = f.d.get("/v1/audit?limit=1000");
    let items = audit["items"].as_array().expect("items");
    let reads: Vec<&Value> = items
        .iter()
        .filter(|a| a["kind"] == "identity.read")
        .collect();
    assert_eq!(reads.len(), 1, "{audit}");
    assert_eq!(reads[0]["actor"], "ma.guoqiang");
    assert_eq!(reads[0]["detail"]["reason"], seen["reason"]);
    assert_eq!(reads[0]["detail"]["requested_for"], fa.as_str());
    assert_eq!(
        reads[0]["detail"]["approval"],
        json!({"step": "identity_request", "by": "zhou.jian"})
    );
    assert!(
        !items.iter().any(|a| a["kind"] == "identity.read_refused"),
        "the console offered no refused read: {audit}"
    );
    assert_clean("the audit log", &audit, &r);
    let logs = f.d.logs();
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "the daemon log contains `{s}`");
    }
    // The custodian's TOTP secret is sealed in the store: not there in clear.
    let totp = seen["totp_secret"].as_str().expect("the enrolled secret");
    let stored = crate::intake::raw_store(&f.d);
    assert!(!stored.contains(totp), "the TOTP secret is stored in clear");
    assert!(
        stored.contains("sealed:v1:"),
        "no sealed TOTP secret in the store"
    );
    // The refused self-review changed nothing: the task is still open for another.
    assert_eq!(seen["separation_seen"], true);
    assert!(f.has_open_task(&clar, "self_review"));

    // The case runs on to its conclusion; the whistleblower reads the feedback.
    f.complete("zhao.lei", &clar, "self_review", json!({}));
    f.complete("huang.min", &clar, "joint_review", json!({}));
    f.complete(
        "zhou.jian",
        &clar,
        "final_review",
        json!({"comments": "同意"}),
    );
    f.complete(
        "zhao.lei",
        &fa,
        "conclude",
        json!({"result": "not_confirmed", "findings": "证据不足"}),
    );
    f.complete("zhou.jian", &fa, "confirm", json!({}));
    let result = "经核查，您反映的问题不属实，已依规为被反映人澄清正名。感谢您的监督。";
    f.complete(
        "zhao.lei",
        &c,
        "feedback",
        json!({"method": "in_person", "result": result}),
    );
    let run = Command::new(&python)
        .arg(root().join("tests/browser/console.py"))
        .arg("feedback")
        .env("CLEARFLOW_URL", f.d.url())
        .env("CLEARFLOW_STAFF", ":")
        .env("CLEARFLOW_SECRETS", secrets.join("|"))
        .env("CLEARFLOW_RECEIPT", &receipt)
        .env("CLEARFLOW_FEEDBACK", result)
        .env("CLEARFLOW_SCREENSHOTS", &shots)
        .env("CLEARFLOW_REPORT", &report)
        .env("CLEARFLOW_NOW", f.d.now().timestamp().to_string())
        .output()
        .expect("running tests/browser/console.py feedback");
    assert!(
        run.status.success(),
        "the feedback walk failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    let seen: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert_eq!(seen["feedback_seen"], true);
    assert!(
        !f.d.logs().contains(&receipt),
        "the receipt code is in the log"
    );
}
