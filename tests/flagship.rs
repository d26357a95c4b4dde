//! The shipped complaint process end to end through the real daemon, plugins and SMTP
//! server, on SQLite and PostgreSQL (DOMAIN.md WF1–WF5).

use clearflow_testkit as support;
use clearflow_testkit::flagship;

use chrono::{TimeZone, Utc};
use flagship::Flagship;
use serde_json::json;
use support::Backend;

/// The key complaint of the samples: filed, acknowledged by mail to the whistleblower
/// alone, with the public status readable by receipt code.
fn key_complaint_is_acknowledged(backend: Backend) {
    let at = Utc.with_ymd_and_hms(2025, 9, 26, 2, 0, 0).unwrap();
    let mut f = Flagship::start(backend, at);
    let body: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(flagship::root().join("examples/flagship/complaint-key.json"))
            .unwrap(),
    )
    .unwrap();
    let (id, receipt) = f.intake(&body);
    let (status, v) = f.status(&receipt);
    assert_eq!(
        (status, v["status"].as_str()),
        (200, Some("received")),
        "{v}"
    );
    f.complete("wang.fang", &id, "screen", json!({"decision": "accept"}));
    let mails = f.delivered();
    let ack: Vec<&String> = mails
        .iter()
        .filter(|m| m.contains("X-Envelope-To: li.ming@example.net"))
        .collect();
    assert_eq!(ack.len(), 1, "one acknowledgement to the whistleblower");
    assert_eq!(f.status_of(&id), "running");
}

#[test]
fn key_complaint_is_acknowledged_sqlite() {
    key_complaint_is_acknowledged(Backend::Sqlite);
}

#[test]
fn key_complaint_is_acknowledged_postgres() {
    key_complaint_is_acknowledged(Backend::Postgres);
}
