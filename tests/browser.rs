//! The web console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by Selenium from `tests/browser/console.py`) against the real
//! daemon with the shipped workflows: a whistleblower files a real-name complaint with
//! JavaScript off and follows it with the receipt code; staff sign in with password and
//! TOTP, complete the registration and screening tasks (a refused submission first), and
//! exchange messages with the whistleblower; refusals (no CSRF token, no role, lockout)
//! and axe-core on every page type. Then, on this side: the reporter's identity and the
//! receipt code are in no log and no mail, and session expiry follows the injected clock.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{TimeZone, Utc};
use clearflow_testkit::Backend;
use clearflow_testkit::flagship::{Flagship, root};
use serde_json::Value;

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
