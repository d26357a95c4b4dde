//! The schedule half of the store on SQLite and PostgreSQL: one decision per fire time
//! under concurrent deciders, overlap decisions, pause, resume and changed schedules.

use clearflow_testkit as support;
use clearflow_testkit::both_backends;
use clearflow_testkit::store as store_support;

use std::future::Future;

use clearflow_store::schedules::{Fire, FireOutcome, OverlapPolicy};
use clearflow_store::{Advance, NewInstance, Store};
use support::Backend;

fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    store_support::run_on(backend, 8, body);
}

both_backends!(
    concurrent_deciders_of_one_fire_start_one_instance,
    overlap_skip_allow_and_cancel_previous,
    paused_and_earlier_fires_are_not_decided,
    a_changed_fingerprint_restarts_the_cursor_at_now,
);

const CANCEL: &str = r#"{"cancel":{"reason":"replaced"}}"#;

fn inst(id: &str) -> NewInstance {
    NewInstance {
        case_number: None,
        id: id.into(),
        workflow: "wf".into(),
        def_hash: "h1".into(),
        state: "{}".into(),
        parent: None,
        ancestors: Vec::new(),
        detached: false,
        idempotency_key: Some(format!("key-{id}")),
        start_event: r#"{"start":null}"#.into(),
        actor: "schedule:wf/s".into(),
    }
}

fn fire<'a>(at: i64, overlap: OverlapPolicy, tree: &'a [NewInstance]) -> Fire<'a> {
    Fire {
        workflow: "wf",
        schedule: "s",
        fire_time: at,
        overlap,
        start: Ok(tree),
        cancel_event: CANCEL,
        actor: "schedule:wf/s",
    }
}

async fn count_instances(s: &Store) -> usize {
    s.list(&clearflow_store::ListFilter {
        workflow: Some("wf".into()),
        limit: 1000,
        ..Default::default()
    })
    .await
    .expect("list")
    .len()
}

async fn concurrent_deciders_of_one_fire_start_one_instance(s: Store) {
    s.sync_schedule("wf", "s", "fp", 0).await.expect("sync");
    for round in 1..=5i64 {
        let at = round * 1000;
        let tasks: Vec<_> = (0..12)
            .map(|n| {
                let s = s.clone();
                tokio::spawn(async move {
                    let tree = [inst(&format!("r{round}-d{n}"))];
                    s.fire_schedule(&fire(at, OverlapPolicy::Allow, &tree), at)
                        .await
                        .expect("fire")
                })
            })
            .collect();
        let mut started = 0;
        for t in tasks {
            match t.await.expect("task") {
                FireOutcome::Started { .. } => started += 1,
                FireOutcome::AlreadyDecided => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(started, 1, "round {round}: one decider wins");
    }
    assert_eq!(count_instances(&s).await, 5);
    let fires = s.schedule_fires("wf", "s", 100).await.expect("fires");
    assert_eq!(fires.len(), 5);
    assert!(fires.iter().all(|f| f.outcome == "started"));
    let state = &s.schedule_states().await.expect("states")[0];
    assert_eq!(state.cursor, 5000);
    assert_eq!(state.last_fire, Some(5000));
    assert_eq!(state.last_instance, fires[0].instance_id);
}

/// Ends instance `id` as the engine would.
async fn end(s: &Store, id: &str) {
    let (row, _) = s.instance(id).await.expect("read").expect("exists");
    s.commit(
        &[Advance {
            id: id.into(),
            version: row.version,
            state: "{}".into(),
            status: "completed".into(),
            outcome: Some("completed".into()),
            ended: true,
            ..Advance::default()
        }],
        0,
    )
    .await
    .expect("commit");
}

async fn overlap_skip_allow_and_cancel_previous(s: Store) {
    s.sync_schedule("wf", "s", "fp", 0).await.expect("sync");
    let a = [inst("a")];
    let out = s
        .fire_schedule(&fire(100, OverlapPolicy::Skip, &a), 100)
        .await
        .expect("fire");
    assert_eq!(
        out,
        FireOutcome::Started {
            instance: "a".into(),
            cancelled: vec![]
        }
    );
    // `a` still runs: skip.
    let b = [inst("b")];
    let out = s
        .fire_schedule(&fire(200, OverlapPolicy::Skip, &b), 200)
        .await
        .expect("fire");
    assert_eq!(
        out,
        FireOutcome::Skipped {
            running: vec!["a".into()]
        }
    );
    assert!(s.instance("b").await.expect("read").is_none());
    // The skip is decided: the same fire is not decided again.
    assert_eq!(
        s.fire_schedule(&fire(200, OverlapPolicy::Allow, &b), 200)
            .await
            .expect("fire"),
        FireOutcome::AlreadyDecided
    );
    // Allow starts beside it.
    let c = [inst("c")];
    assert!(matches!(
        s.fire_schedule(&fire(300, OverlapPolicy::Allow, &c), 300)
            .await
            .expect("fire"),
        FireOutcome::Started { .. }
    ));
    // Cancel-previous sends both a cancel event in the transaction that starts `d`.
    let d = [inst("d")];
    let out = s
        .fire_schedule(&fire(400, OverlapPolicy::CancelPrevious, &d), 400)
        .await
        .expect("fire");
    assert_eq!(
        out,
        FireOutcome::Started {
            instance: "d".into(),
            cancelled: vec!["a".into(), "c".into()]
        }
    );
    for id in ["a", "c"] {
        let pending = s.pending(id).await.expect("pending");
        assert!(
            pending
                .iter()
                .any(|e| e.payload["cancel"]["reason"] == "replaced"),
            "{id}: {pending:?}"
        );
    }
    // Once the earlier runs ended, skip starts again.
    for id in ["a", "c", "d"] {
        end(&s, id).await;
    }
    let e = [inst("e")];
    assert!(matches!(
        s.fire_schedule(&fire(500, OverlapPolicy::Skip, &e), 500)
            .await
            .expect("fire"),
        FireOutcome::Started { .. }
    ));
    // A refused start is recorded with its reason.
    let failed = Fire {
        start: Err("input: missing `days`".into()),
        ..fire(600, OverlapPolicy::Allow, &e)
    };
    assert_eq!(
        s.fire_schedule(&failed, 600).await.expect("fire"),
        FireOutcome::Failed("input: missing `days`".into())
    );
    let outcomes: Vec<String> = s
        .schedule_fires("wf", "s", 100)
        .await
        .expect("fires")
        .into_iter()
        .rev()
        .map(|f| f.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            "started", "skipped", "started", "started", "started", "failed"
        ]
    );
}

async fn paused_and_earlier_fires_are_not_decided(s: Store) {
    s.sync_schedule("wf", "s", "fp", 1000).await.expect("sync");
    let a = [inst("a")];
    // At or before the cursor (the moment the schedule was first seen): never decided.
    assert_eq!(
        s.fire_schedule(&fire(1000, OverlapPolicy::Allow, &a), 1000)
            .await
            .expect("fire"),
        FireOutcome::AlreadyDecided
    );
    let state = s
        .set_schedule_paused("wf", "s", "fp", true, 1500)
        .await
        .expect("pause");
    assert!(state.paused);
    assert_eq!(
        s.fire_schedule(&fire(2000, OverlapPolicy::Allow, &a), 2000)
            .await
            .expect("fire"),
        FireOutcome::AlreadyDecided
    );
    // Resuming at 3000 moves the cursor there: 2000 passed while paused.
    let state = s
        .set_schedule_paused("wf", "s", "fp", false, 3000)
        .await
        .expect("resume");
    assert!(!state.paused);
    assert_eq!(state.cursor, 3000);
    assert_eq!(
        s.fire_schedule(&fire(2000, OverlapPolicy::Allow, &a), 3000)
            .await
            .expect("fire"),
        FireOutcome::AlreadyDecided
    );
    assert!(matches!(
        s.fire_schedule(&fire(4000, OverlapPolicy::Allow, &a), 4000)
            .await
            .expect("fire"),
        FireOutcome::Started { .. }
    ));
    assert_eq!(count_instances(&s).await, 1);
}

async fn a_changed_fingerprint_restarts_the_cursor_at_now(s: Store) {
    let first = s.sync_schedule("wf", "s", "fp1", 1000).await.expect("sync");
    assert_eq!((first.cursor, first.paused), (1000, false));
    // Seen again unchanged (another daemon, a restart): nothing moves.
    let again = s.sync_schedule("wf", "s", "fp1", 5000).await.expect("sync");
    assert_eq!(again.cursor, 1000);
    let changed = s.sync_schedule("wf", "s", "fp2", 7000).await.expect("sync");
    assert_eq!(
        (changed.cursor, changed.fingerprint.as_str()),
        (7000, "fp2")
    );
}
