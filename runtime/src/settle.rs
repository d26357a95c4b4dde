//! Waiting for an instance to settle: to end, or to park on something outside the
//! engine (a task, a timer, an event), without polling the store in a loop.
//!
//! The engine fires [`Settled::fire`] with the ids it has just committed; a waiter
//! registers before it reads the instance, so a commit between the read and the wait
//! cannot be missed. Another daemon on the same PostgreSQL commits behind this one's
//! back, so a waiter also reads again every [`RECHECK`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

/// How often a waiter reads the instance again when nothing fired (work done by
/// another daemon).
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// Waiters by instance id.
#[derive(Default)]
pub(crate) struct Settled {
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl Settled {
    /// A receiver that resolves at the next commit touching `id`.
    pub(crate) fn register(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.waiters.lock().expect("lock");
        let list = map.entry(id.to_owned()).or_default();
        // Waiters that gave up leave closed senders behind; drop them here so a
        // long wait that re-registers every RECHECK does not grow the list.
        list.retain(|s| !s.is_closed());
        list.push(tx);
        drop(map);
        rx
    }

    /// Wakes everyone waiting on one of `ids`.
    pub(crate) fn fire<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut map = self.waiters.lock().expect("lock");
        if map.is_empty() {
            return;
        }
        for id in ids {
            if let Some(list) = map.remove(id) {
                for tx in list {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// How many instances have waiters (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.waiters.lock().expect("lock").len()
    }
}

/// Whether an instance row is settled at `now` (ms): ended, or with nothing for the
/// engine to do before some later time or outside event.
pub fn is_settled(status: &str, wake_at: Option<i64>, now: i64) -> bool {
    status != "running" || wake_at.is_none_or(|w| w > now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_commit_wakes_only_its_waiters() {
        let s = Settled::default();
        let a = s.register("a");
        let mut b = s.register("b");
        s.fire(["a"]);
        assert!(a.await.is_ok());
        assert!(b.try_recv().is_err(), "b was not committed");
        assert_eq!(s.len(), 1);
    }

    #[tokio::test]
    async fn abandoned_waiters_are_dropped_on_the_next_registration() {
        let s = Settled::default();
        for _ in 0..100 {
            drop(s.register("a"));
        }
        let _kept = s.register("a");
        assert_eq!(s.waiters.lock().unwrap()["a"].len(), 1);
    }

    #[test]
    fn settled_means_ended_or_parked() {
        assert!(is_settled("completed", Some(5), 10));
        assert!(is_settled("running", None, 10), "waits for a task or event");
        assert!(is_settled("running", Some(11), 10), "waits for a timer");
        assert!(!is_settled("running", Some(10), 10), "has work now");
    }
}
