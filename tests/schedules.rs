//! Cron schedules through the real daemon on a manual clock, on SQLite and PostgreSQL:
//! one start per fire time, catch-up after downtime, overlap, pause and resume, DST,
//! two daemons on one database, and reloading a changed schedule.

use clearflow_testkit as support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use support::model::{FireList, Instance, Schedule, ScheduleList};
use support::{Backend, Daemon, epoch};

/// The fixture folder of one scenario.
fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/schedules")
        .join(name)
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

/// Waits until the daemon's scheduler has completed a round at clock time `t` or later.
fn evaluated(d: &mut Daemon, t: DateTime<Utc>) {
    d.wait_until(
        &format!("the scheduler has evaluated {t}"),
        Duration::from_secs(60),
        |d| {
            d.get_typed::<ScheduleList>("/v1/schedules")
                .evaluated_at
                .is_some_and(|e| e >= t)
        },
    );
}

/// Moves the clock to `t` and waits until the scheduler has run at that time.
fn step_to(d: &mut Daemon, t: DateTime<Utc>) {
    d.set_clock(t);
    evaluated(d, t);
}

/// The decided fires of a schedule, oldest first: (fire time, outcome, instance).
fn fires(
    d: &Daemon,
    workflow: &str,
    schedule: &str,
) -> Vec<(DateTime<Utc>, String, Option<String>)> {
    let v: FireList = d.get_typed(&format!(
        "/v1/schedules/{workflow}/{schedule}/fires?limit=1000"
    ));
    let mut out: Vec<_> = v
        .items
        .into_iter()
        .map(|f| (f.fire_time, f.outcome, f.instance_id))
        .collect();
    out.reverse();
    out
}

/// The fire times of a schedule that started an instance.
fn started(d: &Daemon, workflow: &str, schedule: &str) -> Vec<DateTime<Utc>> {
    fires(d, workflow, schedule)
        .into_iter()
        .filter(|(_, o, _)| o == "started")
        .map(|(t, _, _)| t)
        .collect()
}

/// Every instance of `workflow`, checked to be one per fire time: the idempotency key
/// the scheduler gives names the fire, and no key appears twice.
fn instances_by_fire(d: &Daemon, workflow: &str) -> BTreeMap<String, Instance> {
    let mut out = BTreeMap::new();
    for i in d.instances(&format!("workflow={workflow}")) {
        let key = i
            .idempotency_key
            .clone()
            .expect("a scheduled instance has a key");
        assert!(
            out.insert(key.clone(), i).is_none(),
            "two instances for {key}"
        );
    }
    out
}

fn schedule_view(d: &Daemon, workflow: &str, schedule: &str) -> Schedule {
    d.get_typed::<ScheduleList>("/v1/schedules")
        .items
        .into_iter()
        .find(|s| s.workflow == workflow && s.schedule == schedule)
        .unwrap_or_else(|| panic!("no schedule {workflow}/{schedule} listed"))
}

fn hm(h: i64, m: i64, s: i64) -> DateTime<Utc> {
    epoch() - TimeDelta::hours(9)
        + TimeDelta::hours(h)
        + TimeDelta::minutes(m)
        + TimeDelta::seconds(s)
}

fn fires_exactly_once_per_fire_time(backend: Backend) {
    let mut d = Daemon::start(backend, &scenario("tick"));
    evaluated(&mut d, epoch());
    // First seen at 09:00:00: counting starts strictly after it, so 09:00 is not back-filled.
    for minute in 1..=35 {
        step_to(&mut d, hm(9, minute, 0));
        // The same instant again: nothing new is decided.
        step_to(&mut d, hm(9, minute, 0));
    }
    let expect = vec![hm(9, 10, 0), hm(9, 20, 0), hm(9, 30, 0)];
    assert_eq!(started(&d, "tick", "ten"), expect);
    let by_fire = instances_by_fire(&d, "tick");
    assert_eq!(by_fire.len(), 3, "{by_fire:?}");
    assert!(by_fire.contains_key("schedule:ten@2025-03-03T09:10:00.000Z"));
    // Started by the schedule, with its input.
    let (_, first) = by_fire.iter().next().expect("one");
    let shown = d.show_instance(&first.id);
    assert_eq!(
        shown.data["input"],
        json!({ "source": "tick" }),
        "{shown:?}"
    );
    assert_eq!(d.metric("clearflow_schedule_fires_total"), 3);
    let view = schedule_view(&d, "tick", "ten");
    assert_eq!(view.last_fire, Some(at("2025-03-03T09:30:00Z")));
    assert_eq!(view.next_fire, Some(at("2025-03-03T09:40:00Z")));
    assert!(!view.paused);
    // A restart on the same store does not fire 09:30 again.
    d.terminate();
    d.clock_start = hm(9, 35, 0);
    d.restart();
    evaluated(&mut d, hm(9, 35, 0));
    step_to(&mut d, hm(9, 40, 1));
    assert_eq!(
        started(&d, "tick", "ten"),
        vec![hm(9, 10, 0), hm(9, 20, 0), hm(9, 30, 0), hm(9, 40, 0)]
    );
    assert_eq!(instances_by_fire(&d, "tick").len(), 4);
    d.terminate();
}

#[test]
fn fires_exactly_once_per_fire_time_sqlite() {
    fires_exactly_once_per_fire_time(Backend::Sqlite);
}

#[test]
fn fires_exactly_once_per_fire_time_postgres() {
    fires_exactly_once_per_fire_time(Backend::Postgres);
}

fn catch_up_after_downtime(backend: Backend) {
    let mut d = Daemon::start(backend, &scenario("catchup"));
    evaluated(&mut d, epoch());
    step_to(&mut d, hm(10, 0, 5));
    for wf in ["cu-none", "cu-latest", "cu-all"] {
        assert_eq!(started(&d, wf, "hourly"), vec![hm(10, 0, 0)], "{wf}");
    }
    // Down from 10:00:05 to 15:30: 11:00 … 15:00 are missed.
    d.terminate();
    d.clock_start = hm(15, 30, 0);
    d.restart();
    evaluated(&mut d, hm(15, 30, 0));
    assert_eq!(started(&d, "cu-none", "hourly"), vec![hm(10, 0, 0)]);
    assert_eq!(
        started(&d, "cu-latest", "hourly"),
        vec![hm(10, 0, 0), hm(15, 0, 0)]
    );
    assert_eq!(
        started(&d, "cu-all", "hourly"),
        vec![hm(10, 0, 0), hm(13, 0, 0), hm(14, 0, 0), hm(15, 0, 0)],
        "the 3 most recent missed fires, oldest first"
    );
    // Catching up is not repeated, and the next fire runs for every policy.
    step_to(&mut d, hm(16, 0, 5));
    assert_eq!(
        started(&d, "cu-none", "hourly"),
        vec![hm(10, 0, 0), hm(16, 0, 0)]
    );
    assert_eq!(
        started(&d, "cu-latest", "hourly"),
        vec![hm(10, 0, 0), hm(15, 0, 0), hm(16, 0, 0)]
    );
    assert_eq!(started(&d, "cu-all", "hourly").len(), 5);
    for wf in ["cu-none", "cu-latest", "cu-all"] {
        assert_eq!(
            instances_by_fire(&d, wf).len(),
            started(&d, wf, "hourly").len(),
            "{wf}: one instance per started fire"
        );
    }
    // After a SIGKILL the same holds: nothing decided twice.
    d.kill9();
    d.clock_start = hm(18, 20, 0);
    d.restart();
    evaluated(&mut d, hm(18, 20, 0));
    assert_eq!(
        started(&d, "cu-all", "hourly"),
        vec![
            hm(10, 0, 0),
            hm(13, 0, 0),
            hm(14, 0, 0),
            hm(15, 0, 0),
            hm(16, 0, 0),
            hm(17, 0, 0),
            hm(18, 0, 0)
        ]
    );
    assert_eq!(instances_by_fire(&d, "cu-all").len(), 7);
    d.terminate();
}

#[test]
fn catch_up_after_downtime_sqlite() {
    catch_up_after_downtime(Backend::Sqlite);
}

#[test]
fn catch_up_after_downtime_postgres() {
    catch_up_after_downtime(Backend::Postgres);
}

fn status(d: &Daemon, id: &str) -> String {
    d.show_instance(id).instance.status
}

fn overlap_policies(backend: Backend) {
    let mut d = Daemon::start(backend, &scenario("overlap"));
    evaluated(&mut d, epoch());
    // 10:00: a first run of each, lasting until 11:30.
    step_to(&mut d, hm(10, 0, 5));
    d.settle();
    let first = |d: &Daemon, wf: &str| fires(d, wf, "hourly")[0].2.clone().expect("instance");
    let (skip_a, allow_a, cancel_a) = (
        first(&d, "ov-skip"),
        first(&d, "ov-allow"),
        first(&d, "ov-cancel"),
    );
    // 11:00: every first run is still going.
    step_to(&mut d, hm(11, 0, 5));
    d.settle();
    let skip = fires(&d, "ov-skip", "hourly");
    assert_eq!(skip[1].0, hm(11, 0, 0));
    assert_eq!(skip[1].1, "skipped", "{skip:?}");
    assert_eq!(status(&d, &skip_a), "running");
    let allow = fires(&d, "ov-allow", "hourly");
    assert_eq!(allow[1].1, "started");
    assert_eq!(
        d.list_all("workflow=ov-allow&status=running").len(),
        2,
        "allow runs both"
    );
    assert_eq!(status(&d, &allow_a), "running");
    let cancel = fires(&d, "ov-cancel", "hourly");
    assert_eq!(cancel[1].1, "started");
    d.wait_until(
        "the previous run is cancelled",
        Duration::from_secs(30),
        |d| status(d, &cancel_a) == "cancelled",
    );
    let shown = d.instance(&cancel_a);
    assert!(
        shown.to_string().contains("cancelled by schedule `hourly`"),
        "the reason is recorded: {shown}"
    );
    assert_eq!(d.list_all("workflow=ov-cancel&status=running").len(), 1);
    assert_eq!(d.metric("clearflow_schedule_skips_total"), 1);
    assert_eq!(d.metric("clearflow_schedule_cancels_total"), 1);
    // 11:45: the first runs of skip and allow have ended (11:30).
    step_to(&mut d, hm(11, 45, 0));
    d.settle();
    assert_eq!(status(&d, &skip_a), "completed");
    // 12:00: skip starts again; cancel_previous cancels the 11:00 run.
    step_to(&mut d, hm(12, 0, 5));
    d.settle();
    let outcomes = |d: &Daemon, wf: &str| -> Vec<String> {
        fires(d, wf, "hourly").into_iter().map(|f| f.1).collect()
    };
    assert_eq!(outcomes(&d, "ov-skip"), ["started", "skipped", "started"]);
    assert_eq!(outcomes(&d, "ov-allow"), ["started", "started", "started"]);
    assert_eq!(outcomes(&d, "ov-cancel"), ["started", "started", "started"]);
    let cancel = fires(&d, "ov-cancel", "hourly");
    let cancel_b = cancel[1].2.clone().expect("instance");
    d.wait_until("the 11:00 run is cancelled", Duration::from_secs(30), |d| {
        status(d, &cancel_b) == "cancelled"
    });
    assert_eq!(d.list_all("workflow=ov-cancel&status=cancelled").len(), 2);
    assert_eq!(d.list_all("workflow=ov-skip").len(), 2);
    assert_eq!(d.list_all("workflow=ov-allow").len(), 3);
    d.terminate();
}

#[test]
fn overlap_policies_sqlite() {
    overlap_policies(Backend::Sqlite);
}

#[test]
fn overlap_policies_postgres() {
    overlap_policies(Backend::Postgres);
}

fn pause_and_resume(backend: Backend) {
    let mut d = Daemon::start(backend, &scenario("pause"));
    evaluated(&mut d, epoch());
    step_to(&mut d, hm(9, 30, 0));
    // Pause through the CLI.
    let out = d.cli_ok(&["schedules", "pause", "pz", "hourly"]);
    assert!(out.contains("pz/hourly") && out.contains("paused"), "{out}");
    let listed: ScheduleList =
        serde_json::from_str(&d.cli_ok(&["schedules", "list", "--json"])).expect("json");
    let item = &listed.items[0];
    assert!(item.paused, "{listed:?}");
    assert_eq!(item.next_fire, None);
    step_to(&mut d, hm(10, 0, 5));
    assert!(
        fires(&d, "pz", "hourly").is_empty(),
        "a paused schedule fired"
    );
    // Still paused after a restart.
    d.terminate();
    d.clock_start = hm(10, 30, 0);
    d.restart();
    evaluated(&mut d, hm(10, 30, 0));
    assert!(fires(&d, "pz", "hourly").is_empty());
    // Resume through the API at 10:30: 10:00 passed while paused and is not back-filled,
    // although the schedule catches up `latest` after downtime.
    let v: Schedule = d.post_typed("/v1/schedules/pz/hourly/resume", &json!({}));
    assert!(!v.paused);
    assert_eq!(v.next_fire, Some(at("2025-03-03T11:00:00Z")));
    evaluated(&mut d, hm(10, 30, 0));
    step_to(&mut d, hm(10, 30, 1));
    assert!(
        fires(&d, "pz", "hourly").is_empty(),
        "back-filled after resume"
    );
    step_to(&mut d, hm(11, 0, 5));
    assert_eq!(started(&d, "pz", "hourly"), vec![hm(11, 0, 0)]);
    // Pause through the API, resume through the CLI.
    d.post("/v1/schedules/pz/hourly/pause", &json!({}));
    step_to(&mut d, hm(12, 0, 5));
    let out = d.cli_ok(&["schedules", "resume", "pz", "hourly"]);
    assert!(out.contains("active"), "{out}");
    step_to(&mut d, hm(13, 0, 5));
    assert_eq!(
        started(&d, "pz", "hourly"),
        vec![hm(11, 0, 0), hm(13, 0, 0)]
    );
    let text = d.cli_ok(&["schedules", "fires", "pz", "hourly"]);
    assert!(
        text.contains("2025-03-03T13:00:00Z") && text.contains("started"),
        "{text}"
    );
    // Unknown schedules are 404 problems, and the CLI fails.
    let (status, body) = d
        .try_post("/v1/schedules/pz/nope/pause", &json!({}))
        .expect("answer");
    assert_eq!(status, 404, "{body}");
    assert!(
        !d.cli(&["schedules", "pause", "nope", "hourly"])
            .status
            .success()
    );
    d.terminate();
}

#[test]
fn pause_and_resume_through_cli_and_api_sqlite() {
    pause_and_resume(Backend::Sqlite);
}

#[test]
fn pause_and_resume_through_cli_and_api_postgres() {
    pause_and_resume(Backend::Postgres);
}

/// Adds `file` of the dst scenario to the running daemon's workflows and reloads.
fn deploy(d: &mut Daemon, file: &str, id: &str) {
    std::fs::copy(scenario("dst").join(file), d.workflows_dir().join(file)).expect("copy");
    d.signal("HUP");
    d.wait_until(&format!("{id} is deployed"), Duration::from_secs(30), |d| {
        d.get_typed::<ScheduleList>("/v1/schedules")
            .items
            .iter()
            .any(|s| s.workflow == id)
    });
}

fn dst_neither_skips_nor_doubles(backend: Backend) {
    let mut d = Daemon::start(backend, &scenario("tick"));
    evaluated(&mut d, epoch());
    // Spring forward in New York, 2025-03-09 02:00 EST -> 03:00 EDT: the 02:30 fire
    // has no wall time and runs once at 03:00 EDT (07:00 UTC).
    step_to(&mut d, at("2025-03-08T12:00:00Z"));
    deploy(&mut d, "dst-spring.yaml", "dst-spring");
    evaluated(&mut d, at("2025-03-08T12:00:00Z"));
    let mut t = at("2025-03-09T04:00:00Z");
    while t <= at("2025-03-09T10:00:00Z") {
        step_to(&mut d, t);
        t += TimeDelta::minutes(30);
    }
    step_to(&mut d, at("2025-03-10T07:00:00Z"));
    assert_eq!(
        started(&d, "dst-spring", "nightly"),
        vec![at("2025-03-09T07:00:00Z"), at("2025-03-10T06:30:00Z")]
    );
    assert_eq!(instances_by_fire(&d, "dst-spring").len(), 2);
    // Fall back, 2025-11-02 02:00 EDT -> 01:00 EST: 01:30 happens twice and runs once,
    // at 01:30 EDT (05:30 UTC), not again at 01:30 EST (06:30 UTC).
    step_to(&mut d, at("2025-11-01T12:00:00Z"));
    deploy(&mut d, "dst-fall.yaml", "dst-fall");
    evaluated(&mut d, at("2025-11-01T12:00:00Z"));
    let mut t = at("2025-11-02T03:00:00Z");
    while t <= at("2025-11-02T09:00:00Z") {
        step_to(&mut d, t);
        t += TimeDelta::minutes(30);
    }
    step_to(&mut d, at("2025-11-03T07:00:00Z"));
    assert_eq!(
        started(&d, "dst-fall", "nightly"),
        vec![at("2025-11-02T05:30:00Z"), at("2025-11-03T06:30:00Z")]
    );
    assert_eq!(instances_by_fire(&d, "dst-fall").len(), 2);
    d.terminate();
}

#[test]
fn dst_neither_skips_nor_doubles_sqlite() {
    dst_neither_skips_nor_doubles(Backend::Sqlite);
}

#[test]
fn dst_neither_skips_nor_doubles_postgres() {
    dst_neither_skips_nor_doubles(Backend::Postgres);
}

#[test]
fn two_daemons_on_one_postgres_start_one_instance_per_fire_time() {
    let mut a = Daemon::start(Backend::Postgres, &scenario("tick"));
    let mut b = Daemon::start_beside(&a);
    evaluated(&mut a, epoch());
    evaluated(&mut b, epoch());
    // Both clocks pass the same fire times at the same moment, many times over.
    let mut expect = Vec::new();
    for k in 1..=8 {
        let t = hm(9, 10 * k, 1);
        expect.push(hm(9, 10 * k, 0));
        std::thread::scope(|s| {
            s.spawn(|| a.set_clock(t));
            s.spawn(|| b.set_clock(t));
        });
        evaluated(&mut a, t);
        evaluated(&mut b, t);
    }
    assert_eq!(started(&a, "tick", "ten"), expect);
    assert_eq!(instances_by_fire(&a, "tick").len(), 8);
    let fired =
        a.metric("clearflow_schedule_fires_total") + b.metric("clearflow_schedule_fires_total");
    assert_eq!(fired, 8, "the daemons together decided each fire once");
    // Both daemons show the same state.
    assert_eq!(
        schedule_view(&a, "tick", "ten").last_fire,
        schedule_view(&b, "tick", "ten").last_fire
    );
    b.terminate();
    a.terminate();
}

fn sighup_picks_up_a_changed_and_a_removed_schedule(backend: Backend) {
    let mut d = Daemon::start(backend, &scenario("hup"));
    evaluated(&mut d, epoch());
    step_to(&mut d, hm(10, 0, 5));
    assert_eq!(started(&d, "hup", "hourly"), vec![hm(10, 0, 0)]);
    // At 10:05 the cron changes to a quarter past.
    step_to(&mut d, hm(10, 5, 0));
    let file = d.workflows_dir().join("hup.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&file, text.replace("\"0 0 * * * *\"", "\"0 15 * * * *\"")).expect("write");
    d.signal("HUP");
    d.wait_until("the new cron is active", Duration::from_secs(30), |d| {
        schedule_view(d, "hup", "hourly").cron == "0 15 * * * *"
    });
    // No wait for the scheduler here: even when its next round runs only at 10:15:05, the
    // new fire times count from the reload at 10:05, so 10:15 is not lost.
    step_to(&mut d, hm(10, 15, 5));
    step_to(&mut d, hm(11, 0, 5));
    step_to(&mut d, hm(11, 15, 5));
    assert_eq!(
        started(&d, "hup", "hourly"),
        vec![hm(10, 0, 0), hm(10, 15, 0), hm(11, 15, 0)]
    );
    // The schedule removed: it stops firing and is no longer listed.
    std::fs::write(
        &file,
        "id: hup\ntitle: no schedule any more\nsteps:\n  - id: done\n    end: ran\n",
    )
    .expect("write");
    d.signal("HUP");
    d.wait_until("the schedule is gone", Duration::from_secs(30), |d| {
        d.get_typed::<ScheduleList>("/v1/schedules")
            .items
            .is_empty()
    });
    step_to(&mut d, hm(12, 15, 5));
    assert_eq!(started(&d, "hup", "hourly").len(), 3);
    assert_eq!(d.list_all("workflow=hup").len(), 3);
    d.terminate();
}

#[test]
fn sighup_picks_up_a_changed_and_a_removed_schedule_sqlite() {
    sighup_picks_up_a_changed_and_a_removed_schedule(Backend::Sqlite);
}

#[test]
fn sighup_picks_up_a_changed_and_a_removed_schedule_postgres() {
    sighup_picks_up_a_changed_and_a_removed_schedule(Backend::Postgres);
}

fn jitter_delays_the_run_not_the_fire_and_refused_starts_are_recorded(backend: Backend) {
    let mut d = Daemon::start(backend, &scenario("misc"));
    evaluated(&mut d, epoch());
    for round in 0..3 {
        let view = schedule_view(&d, "jittered", "ten");
        let fire = view.next_fire.expect("next_fire");
        let run = view.next_run.expect("next_run");
        assert_eq!(fire, hm(9, 10 * (round + 1), 0), "{view:?}");
        assert!(
            run >= fire && run < fire + TimeDelta::minutes(5),
            "{view:?}"
        );
        // Just before the jittered run: the fire is due but waits.
        if run > fire {
            step_to(&mut d, run - TimeDelta::milliseconds(1));
            assert_eq!(started(&d, "jittered", "ten").len(), round as usize);
        }
        step_to(&mut d, run);
        let fired = started(&d, "jittered", "ten");
        assert_eq!(fired.len(), round as usize + 1);
        assert_eq!(
            fired.last(),
            Some(&fire),
            "the fire keeps its un-jittered time"
        );
    }
    // 10:00 is refused by the workflow's input schema: recorded once, with the reason.
    step_to(&mut d, hm(10, 0, 5));
    let refused: FireList = d.get_typed("/v1/schedules/refused/hourly/fires");
    let items = &refused.items;
    assert_eq!(items.len(), 1, "{refused:?}");
    assert_eq!(items[0].outcome, "failed");
    assert!(
        items[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("days")),
        "{refused:?}"
    );
    assert!(d.list_all("workflow=refused").is_empty());
    assert_eq!(d.metric("clearflow_schedule_failures_total"), 1);
    // The schedule goes on: 11:00 is decided too.
    step_to(&mut d, hm(11, 0, 5));
    assert_eq!(fires(&d, "refused", "hourly").len(), 2);
    d.terminate();
}

#[test]
fn jitter_delays_the_run_not_the_fire_and_refused_starts_are_recorded_sqlite() {
    jitter_delays_the_run_not_the_fire_and_refused_starts_are_recorded(Backend::Sqlite);
}

#[test]
fn jitter_delays_the_run_not_the_fire_and_refused_starts_are_recorded_postgres() {
    jitter_delays_the_run_not_the_fire_and_refused_starts_are_recorded(Backend::Postgres);
}
