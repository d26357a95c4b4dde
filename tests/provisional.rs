//! End-to-end tests of provisional deadlines through the real daemon: a working-day wait
//! that runs past the shipped calendars (2024–2026) is provisional, reported once and
//! shown on the instance; adding the next year's file and sending SIGHUP moves the timer
//! to the right date and clears the mark.

use clearflow_testkit as support;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::{Backend, Daemon};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

fn timers(shown: &Value) -> Vec<i64> {
    shown["pending"]
        .as_array()
        .expect("pending")
        .iter()
        .filter(|p| p["kind"] == json!("timer"))
        .map(|p| p["due_at"].as_i64().expect("due_at"))
        .collect()
}

fn provisional_deadline_is_recomputed_on_reload(backend: Backend) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut d = Daemon::start(backend, &fixtures.join("provisional"));
    // Monday 2026-12-07 09:00 in Shanghai: thirty working days end in January 2027.
    d.set_clock(at("2026-12-07T01:00:00Z"));
    let (id, _) = d.start_instance("late", &json!({}), None);
    let (task_instance, _) = d.start_instance("late-task", &json!({}), None);
    d.settle();
    let task_row = |d: &Daemon| {
        let v = d.get(&format!("/v1/tasks?instance={task_instance}"));
        v["items"][0].clone()
    };
    let task = task_row(&d);
    assert_eq!(task["provisional"], json!(true), "{task}");
    assert_eq!(task["due"], json!("2027-01-18T15:59:59.999+00:00"));
    let shown = d.instance(&task_instance);
    assert_eq!(
        shown["provisional_tasks"].as_object().map(|m| m.len()),
        Some(1),
        "{shown:#}"
    );

    // Weekends only: New Year's Day 2027 counts as a working day, so Monday 18 January.
    let provisional_at = at("2027-01-18T15:59:59.999Z").timestamp_millis();
    let shown = d.instance(&id);
    assert_eq!(timers(&shown), [provisional_at]);
    let marks = shown["provisional"].as_object().expect("provisional");
    assert_eq!(marks.len(), 1, "{shown:#}");
    let mark = marks.values().next().expect("one");
    assert_eq!(mark["step"], json!("wait_long"));
    assert_eq!(mark["span"], json!("30wd"));
    let history = support::history_of(&shown);
    assert!(history.contains(&("deadline_provisional".into(), Some("wait_long".into()))));
    let text = d.cli_ok(&["instances", "show", &id]);
    assert!(
        text.contains("provisional deadlines") && text.contains("wait_long  30wd"),
        "{text}"
    );
    let warnings = |d: &Daemon| d.logs().matches("provisional deadline:").count();
    assert_eq!(warnings(&d), 2, "one warning per instance and step");

    // A reload without a calendar change recomputes nothing.
    d.signal("HUP");
    d.wait_until("the reload is done", Duration::from_secs(30), |d| {
        d.logs().matches("workflows loaded").count() >= 2
    });
    d.settle();
    assert_eq!(timers(&d.instance(&id)), [provisional_at]);
    assert!(
        !support::history_of(&d.instance(&id))
            .iter()
            .any(|(k, _)| k == "deadline_recomputed")
    );

    // The administrator adds 2027 (New Year's Day a holiday) and reloads.
    std::fs::copy(
        fixtures.join("calendars/cn-mainland/2027.toml"),
        d.workflows_dir().join("calendars/cn-mainland/2027.toml"),
    )
    .expect("adding the 2027 calendar");
    d.signal("HUP");
    d.wait_until("the deadline is recomputed", Duration::from_secs(30), |d| {
        support::history_of(&d.instance(&id))
            .contains(&("deadline_recomputed".into(), Some("wait_long".into())))
    });
    d.settle();
    let shown = d.instance(&id);
    assert_eq!(
        timers(&shown),
        [at("2027-01-19T15:59:59.999Z").timestamp_millis()],
        "one timer, one working day later"
    );
    assert_eq!(shown["provisional"], json!({}), "no longer provisional");
    let text = d.cli_ok(&["instances", "show", &id]);
    assert!(!text.contains("provisional deadlines"), "{text}");
    assert_eq!(warnings(&d), 2);
    // The task's due date moved by the same day and is no longer provisional; its
    // reminder moved with it (two working days before: the start of Friday 15 January).
    d.wait_until("the task is rescheduled", Duration::from_secs(30), |d| {
        task_row(d)["provisional"] == json!(false)
    });
    assert_eq!(task_row(&d)["due"], json!("2027-01-19T15:59:59.999+00:00"));
    let shown = d.instance(&task_instance);
    assert_eq!(shown["provisional_tasks"], json!({}));
    assert!(
        timers(&shown).contains(&at("2027-01-14T16:00:00Z").timestamp_millis()),
        "{shown:#}"
    );

    // The old date passes without effect; the new one ends the wait.
    d.set_clock(at("2027-01-18T16:00:00Z"));
    d.settle();
    assert_eq!(d.instance(&id)["instance"]["status"], json!("running"));
    d.set_clock(at("2027-01-19T16:00:00Z"));
    d.settle();
    assert_eq!(d.instance(&id)["instance"]["status"], json!("completed"));
}

#[test]
fn provisional_deadline_is_recomputed_on_reload_sqlite() {
    provisional_deadline_is_recomputed_on_reload(Backend::Sqlite);
}

#[test]
fn provisional_deadline_is_recomputed_on_reload_postgres() {
    provisional_deadline_is_recomputed_on_reload(Backend::Postgres);
}
