//! The store suite: the same test bodies against SQLite and PostgreSQL.
//!
//! Each body is an `async fn(Store)`; [`both_backends!`] makes a `sqlite::NAME` and a
//! `postgres::NAME` test of it. The PostgreSQL half needs `CLEARFLOW_TEST_POSTGRES_URL`
//! (set by `./scripts/test.sh`) and fails without it; each test gets a fresh database.

use clearflow_testkit as support;
use clearflow_testkit::both_backends;
use clearflow_testkit::store as store_support;

use std::future::Future;

use clearflow_store::{
    Advance, ArmTimer, InstanceEvent, ListFilter, NewHistory, NewInstance, NewTask, ParentLink,
    Started, Store, StoreError, Subscription, TaskFilter, TaskOp,
};
use support::Backend;

fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    store_support::run_on(backend, 4, body);
}

both_backends!(
    start_with_an_idempotency_key_creates_one_instance,
    concurrent_starts_with_one_key_all_get_the_same_instance,
    a_claim_blocks_other_nodes_until_its_lease_expires,
    a_version_conflict_writes_nothing,
    timers_fall_due_in_order_and_wake_at_follows_them,
    keyed_events_reach_every_subscriber_and_only_them,
    list_pages_newest_first_and_filters,
    the_inbox_is_every_visible_open_task_by_due_date,
);

fn inst(id: &str, workflow: &str, key: Option<&str>) -> NewInstance {
    NewInstance {
        case_number: None,
        id: id.into(),
        workflow: workflow.into(),
        def_hash: "h1".into(),
        state: "{}".into(),
        parent: None,
        ancestors: Vec::new(),
        detached: false,
        idempotency_key: key.map(Into::into),
        start_event: r#"{"start":null}"#.into(),
        actor: "test".into(),
    }
}

fn child(id: &str, parent: &str) -> NewInstance {
    NewInstance {
        case_number: None,
        parent: Some(ParentLink {
            instance: parent.into(),
            link: "link".into(),
            seq: 1,
        }),
        ancestors: vec!["wf".into()],
        ..inst(id, "wf", None)
    }
}

fn timer(timer: i64, due_at: i64, payload: &str) -> ArmTimer {
    ArmTimer {
        timer,
        due_at,
        payload: payload.into(),
    }
}

fn sub(name: &str, key: &str) -> Subscription {
    Subscription {
        name: name.into(),
        key: key.into(),
    }
}

fn history(kind: &str) -> NewHistory {
    NewHistory {
        kind: kind.into(),
        step: Some("s".into()),
        detail: "{}".into(),
        actor: "test".into(),
    }
}

/// An advance of `id` from `version` that changes nothing but the state.
fn advance(id: &str, version: i64) -> Advance {
    Advance {
        id: id.into(),
        version,
        state: r#"{"moved":true}"#.into(),
        status: "running".into(),
        ..Advance::default()
    }
}

async fn wake_at(s: &Store, id: &str) -> Option<i64> {
    s.instance(id)
        .await
        .expect("instance")
        .expect("exists")
        .0
        .wake_at
}

async fn start_with_an_idempotency_key_creates_one_instance(s: Store) {
    assert_eq!(
        s.start(&[vec![inst("a", "wf", Some("k1"))]], 1000)
            .await
            .unwrap(),
        [Started::New("a".into())]
    );
    assert_eq!(
        s.start(&[vec![inst("b", "wf", Some("k1"))]], 1001)
            .await
            .unwrap(),
        [Started::Existing("a".into())]
    );
    assert!(
        s.instance("b").await.unwrap().is_none(),
        "a repeated key created a row"
    );
    // Keys are per workflow.
    assert_eq!(
        s.start(&[vec![inst("c", "other", Some("k1"))]], 1002)
            .await
            .unwrap(),
        [Started::New("c".into())]
    );
    // Within one call the second tree with a used key is not created either, nor its children.
    let got = s
        .start(
            &[
                vec![inst("d", "wf", Some("k2")), child("d1", "d")],
                vec![inst("e", "wf", Some("k2")), child("e1", "e")],
            ],
            1003,
        )
        .await
        .unwrap();
    assert_eq!(
        got,
        [Started::New("d".into()), Started::Existing("d".into())]
    );
    assert!(s.instance("e1").await.unwrap().is_none());
    let (d1, _) = s
        .instance("d1")
        .await
        .unwrap()
        .expect("the child was created with its root");
    assert_eq!(
        (d1.parent_id.as_deref(), d1.parent_link.as_deref()),
        (Some("d"), Some("link"))
    );
    assert_eq!(
        s.pending("d1").await.unwrap().len(),
        1,
        "the child has its start event"
    );
    let (a, _) = s.instance("a").await.unwrap().expect("a");
    assert_eq!(
        (a.idempotency_key.as_deref(), a.status.as_str(), a.wake_at),
        (Some("k1"), "running", Some(1000))
    );
}

/// Regression: two starts with the same key racing each other must both answer with the
/// one instance, not fail on the unique index (PostgreSQL lets both see "no such key").
async fn concurrent_starts_with_one_key_all_get_the_same_instance(s: Store) {
    for round in 0..10 {
        let key = format!("same-{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (s, key, barrier) = (s.clone(), key.clone(), barrier.clone());
                let root = format!("r{round}-{i}");
                tokio::spawn(async move {
                    barrier.wait().await;
                    s.start(
                        &[vec![
                            inst(&root, "wf", Some(&key)),
                            child(&format!("{root}-c"), &root),
                        ]],
                        100,
                    )
                    .await
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(
                t.await
                    .expect("task")
                    .expect("a start with a used key must not fail")
                    .remove(0),
            );
        }
        let winners: Vec<&Started> = results
            .iter()
            .filter(|r| matches!(r, Started::New(_)))
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert!(
            results.iter().all(|r| r.id() == winners[0].id()),
            "{results:?}"
        );
    }
    let all = s
        .list(&ListFilter {
            limit: 100,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 20, "one root and its one child per key: {all:?}");
}

async fn a_claim_blocks_other_nodes_until_its_lease_expires(s: Store) {
    s.start(&[vec![inst("a", "wf", None)]], 10_000)
        .await
        .unwrap();
    let by_a = s.claim("node-a", 10_000, 1000, 10).await.unwrap();
    assert_eq!(by_a.len(), 1);
    assert_eq!(
        by_a[0].events.len(),
        1,
        "the start event comes with the claim"
    );
    assert!(
        s.claim("node-b", 10_500, 1000, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed twice within the lease"
    );
    let by_b = s.claim("node-b", 11_500, 1000, 10).await.unwrap();
    assert_eq!(
        by_b.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["a"],
        "the expired lease was not taken over"
    );
    // B commits; A's late commit from the same version is refused.
    s.commit(&[advance("a", by_b[0].version)], 11_600)
        .await
        .unwrap();
    assert!(
        matches!(s.commit(&[advance("a", by_a[0].version)], 11_700).await, Err(StoreError::Conflict(id)) if id == "a")
    );
}

async fn a_version_conflict_writes_nothing(s: Store) {
    s.start(
        &[vec![inst("a", "wf", None)], vec![inst("b", "wf", None)]],
        0,
    )
    .await
    .unwrap();
    let claimed = s.claim("n", 0, 1000, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let full = |id: &str, version: i64| {
        let c = claimed.iter().find(|c| c.id == id).expect("claimed");
        Advance {
            consumed: c.events.iter().map(|e| e.id).collect(),
            history: vec![history("step_completed")],
            arm: vec![timer(1, 500, "timer")],
            subscribe: vec![sub("ev", "k")],
            children: vec![child(&format!("{id}-child"), id)],
            notify: vec![InstanceEvent {
                instance: "a".into(),
                payload: "hello".into(),
            }],
            ..advance(id, version)
        }
    };
    // b is fine, a carries a stale version: the whole batch is refused.
    let err = s
        .commit(&[full("b", 0), full("a", 7)], 10)
        .await
        .expect_err("a stale version must conflict");
    assert!(
        matches!(&err, StoreError::Conflict(id) if id == "a"),
        "{err}"
    );
    for id in ["a", "b"] {
        let (row, state) = s.instance(id).await.unwrap().expect("exists");
        assert_eq!((row.version, state.as_str()), (0, "{}"), "{id} changed");
        assert!(s.history(id).await.unwrap().is_empty(), "{id} got history");
        let pending = s.pending(id).await.unwrap();
        assert_eq!(
            pending.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["event"],
            "{id}: only the start event is left"
        );
        assert!(
            s.instance(&format!("{id}-child")).await.unwrap().is_none(),
            "{id}'s child was created"
        );
        assert!(
            s.list(&ListFilter {
                parent: Some(id.into()),
                limit: 10,
                ..ListFilter::default()
            })
            .await
            .unwrap()
            .is_empty()
        );
    }
    assert!(
        s.send_keyed("ev", "k", "x", "t", 20)
            .await
            .unwrap()
            .is_empty(),
        "a subscription was written"
    );
    // The same batch with the right versions goes through.
    s.release(&["a".into(), "b".into()]).await.unwrap();
    s.commit(&[full("b", 0), full("a", 0)], 10).await.unwrap();
    assert_eq!(s.history("a").await.unwrap().len(), 1);
    assert_eq!(s.instance("a").await.unwrap().expect("a").0.version, 1);
}

async fn timers_fall_due_in_order_and_wake_at_follows_them(s: Store) {
    s.start(&[vec![inst("a", "wf", None)]], 0).await.unwrap();
    let c = s.claim("n", 0, 1000, 10).await.unwrap().remove(0);
    let first = Advance {
        consumed: c.events.iter().map(|e| e.id).collect(),
        arm: vec![
            timer(1, 3000, "t1"),
            timer(2, 1000, "t2"),
            timer(3, 2000, "t3"),
        ],
        ..advance("a", c.version)
    };
    s.commit(&[first], 0).await.unwrap();
    assert_eq!(
        wake_at(&s, "a").await,
        Some(1000),
        "wake_at is the earliest timer"
    );
    assert_eq!(s.next_wake().await.unwrap(), Some(1000));
    assert!(
        s.claim("n", 999, 1000, 10).await.unwrap().is_empty(),
        "nothing is due before the first timer"
    );

    let c = s.claim("n", 2500, 1000, 10).await.unwrap().remove(0);
    assert_eq!(
        c.events
            .iter()
            .map(|e| e.payload.as_str())
            .collect::<Vec<_>>(),
        ["t2", "t3"],
        "due timers, in due order, and no others"
    );
    let second = Advance {
        consumed: c.events.iter().map(|e| e.id).collect(),
        ..advance("a", c.version)
    };
    s.commit(&[second], 2500).await.unwrap();
    assert_eq!(
        wake_at(&s, "a").await,
        Some(3000),
        "wake_at moves to the remaining timer"
    );

    // Cancelling the last timer leaves nothing to wake for.
    s.commit(
        &[Advance {
            cancel: vec![1],
            ..advance("a", 2)
        }],
        2600,
    )
    .await
    .unwrap();
    assert_eq!(wake_at(&s, "a").await, None);
    assert_eq!(s.next_wake().await.unwrap(), None);
    assert!(s.pending("a").await.unwrap().is_empty());

    // An instance that ends drops its timers with it.
    s.commit(
        &[Advance {
            arm: vec![timer(4, 9000, "t4")],
            ..advance("a", 3)
        }],
        2700,
    )
    .await
    .unwrap();
    assert_eq!(wake_at(&s, "a").await, Some(9000));
    let end = Advance {
        status: "completed".into(),
        outcome: Some("done".into()),
        ended: true,
        ..advance("a", 4)
    };
    s.commit(&[end], 2800).await.unwrap();
    let (row, _) = s.instance("a").await.unwrap().expect("a");
    assert_eq!(
        (
            row.status.as_str(),
            row.outcome.as_deref(),
            row.ended_at,
            row.wake_at
        ),
        ("completed", Some("done"), Some(2800), None)
    );
    assert!(s.pending("a").await.unwrap().is_empty());
}

async fn keyed_events_reach_every_subscriber_and_only_them(s: Store) {
    s.start(
        &[
            vec![inst("a", "wf", None)],
            vec![inst("b", "wf", None)],
            vec![inst("c", "wf", None)],
        ],
        0,
    )
    .await
    .unwrap();
    let claimed = s.claim("n", 0, 1000, 10).await.unwrap();
    let batch: Vec<Advance> = claimed
        .iter()
        .map(|c| Advance {
            consumed: c.events.iter().map(|e| e.id).collect(),
            subscribe: vec![sub("approve", if c.id == "c" { "k2" } else { "k1" })],
            ..advance(&c.id, c.version)
        })
        .collect();
    s.commit(&batch, 0).await.unwrap();
    for id in ["a", "b", "c"] {
        assert_eq!(wake_at(&s, id).await, None);
    }

    let mut to = s
        .send_keyed("approve", "k1", "yes", "api", 5000)
        .await
        .unwrap();
    to.sort();
    assert_eq!(to, ["a", "b"]);
    for id in ["a", "b"] {
        assert_eq!(wake_at(&s, id).await, Some(5000));
        let pending = s.pending(id).await.unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|e| (e.kind.as_str(), e.due_at))
                .collect::<Vec<_>>(),
            [("event", 5000)]
        );
    }
    assert_eq!(wake_at(&s, "c").await, None, "c waits for another key");
    assert!(
        s.send_keyed("approve", "nobody", "x", "api", 5000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.send_keyed("other", "k1", "x", "api", 5000)
            .await
            .unwrap()
            .is_empty()
    );

    // a unsubscribes and b ends: neither gets the next one.
    let claimed = s.claim("n", 5000, 1000, 10).await.unwrap();
    let batch: Vec<Advance> = claimed
        .iter()
        .map(|c| Advance {
            consumed: c.events.iter().map(|e| e.id).collect(),
            unsubscribe: vec![sub("approve", "k1")]
                .into_iter()
                .filter(|_| c.id == "a")
                .collect(),
            ended: c.id == "b",
            status: if c.id == "b" { "completed" } else { "running" }.into(),
            ..advance(&c.id, c.version)
        })
        .collect();
    assert_eq!(batch.len(), 2);
    s.commit(&batch, 5000).await.unwrap();
    assert!(
        s.send_keyed("approve", "k1", "again", "api", 6000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.send_keyed("approve", "k2", "yes", "api", 6000)
            .await
            .unwrap(),
        ["c"]
    );
    assert!(
        !s.send("b", "late", "api", 6000).await.unwrap(),
        "an ended instance takes no events"
    );
    assert!(s.send("a", "direct", "api", 6000).await.unwrap());
}

async fn list_pages_newest_first_and_filters(s: Store) {
    for i in 0..7 {
        let workflow = if i % 2 == 0 { "wf" } else { "other" };
        s.start(
            &[vec![inst(&format!("i{i}"), workflow, None)]],
            1000 + i * 10,
        )
        .await
        .unwrap();
    }
    // Two at the same millisecond: the id breaks the tie, so paging neither skips nor repeats.
    s.start(&[vec![inst("j0", "wf", None), child("j1", "j0")]], 1060)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list(&ListFilter {
                limit: 3,
                after: after.clone(),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|r| (r.created_at, r.id.clone())));
        if page.len() < 3 {
            break;
        }
        let last = page.last().expect("page");
        after = Some((last.created_at, last.id.clone()));
    }
    let ids: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["j1", "j0", "i6", "i5", "i4", "i3", "i2", "i1", "i0"],
        "newest first, ties by id, each once"
    );

    let other = s
        .list(&ListFilter {
            workflow: Some("other".into()),
            limit: 100,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        other.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["i5", "i3", "i1"]
    );
    let children = s
        .list(&ListFilter {
            parent: Some("j0".into()),
            limit: 100,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        children.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["j1"]
    );
    s.commit(
        &[Advance {
            status: "completed".into(),
            ended: true,
            ..advance("i2", 0)
        }],
        2000,
    )
    .await
    .unwrap();
    let done = s
        .list(&ListFilter {
            status: Some("completed".into()),
            limit: 100,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        done.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["i2"]
    );
    let running_wf = s
        .list(&ListFilter {
            workflow: Some("wf".into()),
            status: Some("running".into()),
            limit: 100,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        running_wf.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["j1", "j0", "i6", "i4", "i0"]
    );
}

/// The inbox's query (one index-ordered subquery per way a task is the user's, merged)
/// lists exactly the open tasks assigned to, claimed by or in a role of the user, each
/// once, soonest due first with undated ones last, for every page size; filters apply.
async fn the_inbox_is_every_visible_open_task_by_due_date(s: Store) {
    s.start(
        &[vec![inst("a", "wf", None)], vec![inst("b", "other", None)]],
        0,
    )
    .await
    .unwrap();
    let claimed = s.claim("n", 0, 1000, 10).await.unwrap();
    let mut batch = Vec::new();
    for c in &claimed {
        let mut tasks = Vec::new();
        for n in 0..40i64 {
            let (role, assignee) = match n % 5 {
                0 => (Some("clerk"), None),
                1 => (Some("clerk"), Some("li")),
                2 => (Some("other"), Some("li")),
                3 => (Some("other"), None),
                _ => (Some("head"), None),
            };
            tasks.push(TaskOp::Create(NewTask {
                task_no: n + 1,
                token: n + 1,
                step: format!("s{n}"),
                workflow: if c.id == "a" { "wf" } else { "other" }.into(),
                title: None,
                role: role.map(Into::into),
                assignee: assignee.map(Into::into),
                priority: n % 3,
                // Some undated, some sharing a due date (priority and age break ties).
                due_at: (n % 7 != 0).then_some(1_000 + (n * 37 % 11) * 100),
                follow_up_at: None,
                provisional: false,
            }));
        }
        batch.push(Advance {
            consumed: c.events.iter().map(|e| e.id).collect(),
            tasks,
            ..advance(&c.id, c.version)
        });
    }
    s.commit(&batch, 20).await.unwrap();
    // li claims a task of a role she does not hold (it stays visible to her) and one of
    // hers; closed tasks are never listed.
    let all = s
        .list_tasks(&TaskFilter {
            status: Some("open".into()),
            limit: 1000,
            order_by_due: true,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 80);
    let head_task = all
        .iter()
        .find(|t| t.role.as_deref() == Some("head"))
        .unwrap();
    let roles = vec!["head".to_owned()];
    s.claim_task(&head_task.id, "wang", &roles, true)
        .await
        .unwrap()
        .unwrap();
    let theirs = |user: &str, roles: &[&str], t: &clearflow_store::TaskRow| {
        t.assignee.as_deref() == Some(user)
            || t.claimed_by.as_deref() == Some(user)
            || t.role.as_deref().is_some_and(|r| roles.contains(&r))
    };
    let all = s
        .list_tasks(&TaskFilter {
            status: Some("open".into()),
            limit: 1000,
            order_by_due: true,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    for (user, roles) in [
        ("li", vec!["clerk"]),
        ("wang", vec!["clerk", "clerk"]),
        ("zhao", vec![]),
        ("li", vec!["clerk", "other", "head"]),
    ] {
        let expected: Vec<&str> = all
            .iter()
            .filter(|t| theirs(user, &roles, t))
            .map(|t| t.id.as_str())
            .collect();
        for limit in [1, 5, 17, 51, 1000] {
            for workflow in [None, Some("other")] {
                let got = s
                    .list_tasks(&TaskFilter {
                        visible_to: Some((
                            user.to_owned(),
                            roles.iter().map(|r| r.to_string()).collect(),
                        )),
                        status: Some("open".into()),
                        workflow: workflow.map(Into::into),
                        limit,
                        order_by_due: true,
                        ..TaskFilter::default()
                    })
                    .await
                    .unwrap();
                let want: Vec<&str> = expected
                    .iter()
                    .copied()
                    .filter(|id| {
                        workflow.is_none_or(|w| all.iter().any(|t| t.id == *id && t.workflow == w))
                    })
                    .take(limit as usize)
                    .collect();
                let got: Vec<&str> = got.iter().map(|t| t.id.as_str()).collect();
                assert_eq!(got, want, "{user} {roles:?} limit {limit} {workflow:?}");
            }
        }
    }
    // The order itself: due dates ascending, undated last.
    let dues: Vec<i64> = all.iter().map(|t| t.due_at.unwrap_or(i64::MAX)).collect();
    assert!(dues.windows(2).all(|w| w[0] <= w[1]), "{dues:?}");
    assert!(all.last().unwrap().due_at.is_none());
}
