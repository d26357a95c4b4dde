//! The concurrent-start invariant: an `on_start` instance exists exactly when its root does.
//!
//! `cs-parent` declares `on_start: cs-partner as partner` and awaits it. Starting it must
//! create exactly one linked instance in the same transaction, also when the daemon is
//! SIGKILLed while starts are in flight, and the await must not pass before the partner
//! has ended.

use clearflow_testkit as support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::json;
use support::model::{InstancePage, StartReply};
use support::{Backend, Daemon, epoch, fixtures};

const ROOTS: usize = 120;

fn start(d: &Daemon, n: usize) -> Option<String> {
    let body = json!({ "workflow": "cs-parent", "input": { "who": format!("w{n}") }, "idempotency_key": format!("cs-{n}") });
    match d.try_post("/v1/instances", &body) {
        Ok((200 | 201, v)) => {
            let reply: StartReply = serde_json::from_value(v).expect("a start reply");
            Some(reply.id)
        }
        Ok((status, v)) => panic!("starting cs-{n}: {status} {v}"),
        Err(_) => None,
    }
}

/// Every `cs-parent` has exactly one child, its `partner`, and there is no other partner.
fn assert_one_partner_each(d: &Daemon) -> usize {
    let parents = d.instances("workflow=cs-parent");
    for p in &parents {
        let id = &p.id;
        let children = d
            .get_typed::<InstancePage>(&format!("/v1/instances?parent={id}"))
            .items;
        assert_eq!(
            children.len(),
            1,
            "parent {id} has {} linked instances: {children:#?}",
            children.len()
        );
        assert_eq!(children[0].workflow, "cs-partner");
        assert_eq!(children[0].parent_link.as_deref(), Some("partner"));
    }
    let partners = d.instances("workflow=cs-partner");
    assert_eq!(
        partners.len(),
        parents.len(),
        "partners without a parent, or parents without one"
    );
    assert!(
        partners.iter().all(|p| p.parent_id.is_some()),
        "a partner without a parent"
    );
    parents.len()
}

fn one_linked_instance_per_start_even_under_sigkill(backend: Backend) {
    let mut d = Daemon::start(backend, &fixtures());
    let acked = AtomicUsize::new(0);
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (acked, ids, d) = (&acked, &ids, &d);
            s.spawn(move || {
                for n in (t..ROOTS).step_by(4) {
                    match start(d, n) {
                        Some(id) => {
                            ids.lock().expect("lock").push(id);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        None => return,
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::SeqCst) < ROOTS / 2 {
            assert!(Instant::now() < deadline, "starts are too slow");
            std::thread::sleep(Duration::from_millis(1));
        }
        d.signal("KILL");
    });
    d.reap();
    let acked = ids.into_inner().expect("lock");
    assert!(
        acked.len() >= ROOTS / 2 && acked.len() < ROOTS,
        "the kill came in the middle: {} acknowledged",
        acked.len()
    );

    d.restart();
    let survived = assert_one_partner_each(&d);
    assert!(
        survived >= acked.len(),
        "{survived} roots exist but {} starts were acknowledged",
        acked.len()
    );
    for id in &acked {
        let shown = d.show_instance(id);
        assert_eq!(shown.children.len(), 1, "acknowledged root {id}");
    }

    // Starting everything again completes the set without duplicating any root or partner.
    for n in 0..ROOTS {
        start(&d, n).expect("the restarted daemon answers");
    }
    assert_eq!(assert_one_partner_each(&d), ROOTS);
    d.terminate();
}

fn await_waits_for_the_linked_instance(backend: Backend) {
    let mut d = Daemon::start(backend, &fixtures());
    let (id, created) = d.start_instance("cs-parent", &json!({ "who": "ana" }), Some("await-1"));
    assert!(created);
    d.settle();
    let partner = d
        .get_typed::<InstancePage>(&format!("/v1/instances?parent={id}"))
        .items
        .first()
        .expect("partner")
        .id
        .clone();

    // An hour in, the partner (two hours of deliberation) still runs, so the parent waits.
    d.advance(TimeDelta::hours(1));
    d.settle();
    let parent = d.show_instance(&id);
    assert_eq!(parent.instance.status, "running");
    let waiting = support::history_steps(&parent);
    assert!(
        waiting.contains(&("step_waiting".into(), Some("wait_partner".into()))),
        "{waiting:?}"
    );
    assert!(
        !waiting
            .iter()
            .any(|(k, s)| k == "step_completed" && s.as_deref() == Some("wait_partner")),
        "await passed early: {waiting:?}"
    );
    assert_eq!(d.show_instance(&partner).instance.status, "running");

    // Just before the partner's timer nothing changes; right after it, both end.
    d.set_clock(epoch() + TimeDelta::hours(2) - TimeDelta::seconds(1));
    d.settle();
    assert_eq!(d.show_instance(&id).instance.status, "running");
    d.set_clock(epoch() + TimeDelta::hours(2));
    d.wait_until("the parent ends", Duration::from_secs(30), |d| {
        d.show_instance(&id).instance.status != "running"
    });

    let partner = d.show_instance(&partner).instance;
    let parent = d.show_instance(&id);
    assert_eq!(partner.outcome.as_deref(), Some("partner-agreed"));
    assert_eq!(parent.instance.status, "completed");
    assert_eq!(
        parent.instance.outcome.as_deref(),
        Some("agreed"),
        "the parent saw the partner's outcome"
    );
    let partner_ended = partner.ended_at.expect("partner ended");
    assert!(parent.instance.ended_at.expect("parent ended") >= partner_ended);
    let awaited = parent
        .history
        .iter()
        .find(|h| h.kind == "step_completed" && h.step.as_deref() == Some("wait_partner"))
        .expect("the await step completed");
    assert_eq!(
        awaited.detail["outcome"], "partner-agreed",
        "the await's result holds the outcome: {awaited:?}"
    );
    assert_eq!(
        awaited.detail["output"]["who"], "ana",
        "and the output: {awaited:?}"
    );
    d.terminate();
}

#[test]
fn concurrent_start_creates_exactly_one_linked_instance_under_sigkill_sqlite() {
    one_linked_instance_per_start_even_under_sigkill(Backend::Sqlite);
}

#[test]
fn concurrent_start_creates_exactly_one_linked_instance_under_sigkill_postgres() {
    one_linked_instance_per_start_even_under_sigkill(Backend::Postgres);
}

#[test]
fn await_on_a_concurrent_start_waits_until_it_ends_sqlite() {
    await_waits_for_the_linked_instance(Backend::Sqlite);
}

#[test]
fn await_on_a_concurrent_start_waits_until_it_ends_postgres() {
    await_waits_for_the_linked_instance(Backend::Postgres);
}
